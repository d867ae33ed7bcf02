"""The real ingest job (Ray Data on local Ray) to a local folder and to SeaweedFS S3."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

from lcmftn.data import dataset_format
from lcmftn.data.dataset import MANIFEST_NAME, load_frames
from lcmftn.data.synthetic import FilmConfig, write_film
from lcmftn.integrations import storage
from workflows import ingest

pytestmark = pytest.mark.integration

SIZE = 64
REPO = Path(__file__).resolve().parents[2]


def _film(path: Path, seed: int) -> dict:
    cfg = FilmConfig(seed=seed, size=SIZE, num_shots=2, shot_frames=12, num_characters=1, still_prob=0.0)
    return write_film(path, cfg)


@pytest.fixture(scope="module")
def films(tmp_path_factory) -> dict:
    """Two good tiny films (with truth) and a set of bad inputs."""
    root = tmp_path_factory.mktemp("films")
    good = {name: (root / "good" / f"{name}.mp4", _film(root / "good" / f"{name}.mp4", seed))
            for name, seed in (("alpha", 1), ("beta", 2))}  # fmt: skip
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "notes.mp4").write_text("this is not a video\n" * 50)
    data = good["alpha"][0].read_bytes()
    (bad / "truncated.mp4").write_bytes(data[: len(data) // 2])  # mp4: its index (moov) is lost
    _film(root / "full.mkv", seed=3)
    mkv = (root / "full.mkv").read_bytes()
    (bad / "cut.mkv").write_bytes(mkv[: len(mkv) * 2 // 3])  # mkv: decodes, then ends early
    return {"root": root, "good": good, "bad": bad}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(argv: list[str]) -> tuple[int, dict]:
    rc = ingest.main([*argv, "--size", str(SIZE)])
    return rc, json.loads(storage.read_bytes(storage.join(argv[argv.index("--out") + 1], MANIFEST_NAME)))


def _check_dataset(out: str, films: dict, manifest: dict) -> None:
    for name, (path, truth) in films["good"].items():
        e = manifest["films"][name]
        assert e["status"] == "ok", e
        assert e["sha256"] == _sha(path) and e["frames"] == truth["frames"]
        assert [s["start"] for s in e["shots"][1:]] == truth["cuts"]
        assert all(s.startswith(f"frames/{name}/{e['version']}/") for s in e["shards"])
    frames = load_frames(out)
    assert sorted(frames.films) == sorted(films["good"])
    for name, (_, truth) in films["good"].items():
        shots = [s for s in frames if s.film == name]
        assert [len(s) for s in shots] == [sh["end"] - sh["start"] for sh in truth["shots"]]
        assert all((s.frames == np.arange(s.frames[0], s.frames[0] + len(s))).all() for s in shots)
        assert shots[0].color(0).shape == (SIZE, SIZE, 3) and shots[0].lineart(0).shape == (SIZE, SIZE)
        found = {int(s.frames[i]) for s in shots for i in range(len(s)) if s.holds[i]}
        cut_starts = {sh["start"] for sh in truth["shots"]}
        true_holds = set(truth["holds"]) - cut_starts
        assert len(found & true_holds) >= 0.8 * len(true_holds) and len(found - true_holds) <= 2
    assert manifest["config"]["size_px"] == SIZE and manifest["version"] == ingest.MANIFEST_VERSION


def test_local_ingest_manifest_shards_and_resume(ray_local, films, tmp_path):
    out = str(tmp_path / "ds")
    good = str(films["root"] / "good" / "*.mp4")
    rc, manifest = _run(["--films", good, "--out", out])
    assert rc == 0
    _check_dataset(out, films, manifest)
    assert not (Path(out) / ingest.STAGING_DIR / "alpha").exists()
    shard = Path(out) / manifest["films"]["alpha"]["shards"][0]
    mtime = shard.stat().st_mtime_ns

    # Same inputs + config: nothing is redone.
    summary = ingest.run_ingest([good], out, ingest.IngestConfig(size_px=SIZE))
    assert (summary["ok"], summary["skipped"], summary["failed"], summary["frames"]) == (2, 2, 0, 0)
    assert shard.stat().st_mtime_ns == mtime

    # A changed film is re-ingested (new version), the old version is removed, beta is skipped.
    alpha_path = films["good"]["alpha"][0]
    changed = tmp_path / "in" / "alpha.mp4"
    truth = _film(changed, seed=7)
    summary = ingest.run_ingest([str(changed), str(films["good"]["beta"][0])], out,
                                ingest.IngestConfig(size_px=SIZE))  # fmt: skip
    assert (summary["ok"], summary["skipped"]) == (2, 1)
    manifest = json.loads((Path(out) / MANIFEST_NAME).read_text())
    assert manifest["films"]["alpha"]["sha256"] == _sha(changed) != _sha(alpha_path)
    assert manifest["films"]["alpha"]["frames"] == truth["frames"]
    assert sorted(p.name for p in (Path(out) / "frames" / "alpha").iterdir()) == [manifest["films"]["alpha"]["version"]]

    # The source then gets corrupted: the film is reported failed, its committed shards are kept.
    changed.write_bytes(b"\0" * 4096)
    summary = ingest.run_ingest([str(changed)], out, ingest.IngestConfig(size_px=SIZE))
    assert (summary["ok"], summary["failed"]) == (0, 1)
    entry = json.loads((Path(out) / MANIFEST_NAME).read_text())["films"]["alpha"]
    assert entry["status"] == "failed" and entry["last_ok"] == manifest["films"]["alpha"]
    assert all((Path(out) / s).is_file() for s in entry["last_ok"]["shards"])


def test_bad_inputs_are_recorded_and_others_go_on(ray_local, films, tmp_path):
    out = str(tmp_path / "ds")
    missing = str(films["root"] / "missing.mp4")
    argv = ["--films", str(films["good"]["alpha"][0]), str(films["bad"] / "*.mp4"), missing,
            str(films["bad"] / "cut.mkv"),
            str(films["root"] / "nothing-*.mkv"), "--out", out, "--size", str(SIZE)]  # fmt: skip
    env = dict(os.environ, RAY_ADDRESS=ray_local.get_runtime_context().gcs_address)
    proc = subprocess.run([sys.executable, "-m", "workflows.ingest", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["ok"], summary["failed"], summary["films"]) == (1, 6, 7)
    assert "1 of 7 films ok" in proc.stderr and "6 failed" in proc.stderr
    manifest = json.loads((Path(out) / MANIFEST_NAME).read_text())
    f = manifest["films"]
    assert f["alpha"]["status"] == "ok"
    expect = {"empty": "empty", "notes": "not a video", "truncated": "truncated|decode failed|no frame|corrupt",
              "missing": "no such file", "cut": r"truncated: decoded \d+ of about \d+ frames"}  # fmt: skip
    for name, pattern in expect.items():
        assert f[name]["status"] == "failed", f[name]
        assert f"bad/{name}." in f[name]["reason"] or f"/{name}.mp4" in f[name]["reason"], f[name]
        assert re.search(pattern, f[name]["reason"]), f[name]
        assert f"FAILED {name}" in proc.stderr
    assert any(k.endswith("nothing-*.mkv") for k in summary["failures"])
    assert load_frames(out).films == ["alpha"]
    assert not list((Path(out) / ingest.STAGING_DIR).glob("*/*"))


class _Killed(BaseException):
    """Stands for the process dying (not an Exception: nothing may catch it)."""


def test_crash_mid_film_leaves_no_visible_half_film(ray_local, films, tmp_path, monkeypatch):
    out = str(tmp_path / "ds")
    alpha, beta = (str(films["good"][n][0]) for n in ("alpha", "beta"))
    cfg = ingest.IngestConfig(size_px=SIZE, rows_per_shard=5)
    assert ingest.run_ingest([alpha], out, cfg)["ok"] == 1
    before = (Path(out) / MANIFEST_NAME).read_bytes()

    # 1. A worker dies after writing 2 of beta's shards (staged, never committed).
    real_write = dataset_format.pq.write_table
    calls = []

    def dying_write(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise _Killed
        real_write(*a, **k)

    monkeypatch.setattr(dataset_format.pq, "write_table", dying_write)
    with pytest.raises(_Killed):
        ingest.stage_film({"film": "beta", "source": beta, "prev": ""}, out, pafs.LocalFileSystem(),
                          None, ingest.asdict(cfg))  # fmt: skip
    monkeypatch.undo()
    assert len(list((Path(out) / ingest.STAGING_DIR / "beta").rglob("*.parquet"))) == 2
    assert (Path(out) / MANIFEST_NAME).read_bytes() == before
    assert load_frames(out).films == ["alpha"]

    # 2. The driver dies after committing beta's shards but before the manifest names them.
    real_manifest = ingest.write_manifest

    def dying_manifest(uri, manifest):
        if "beta" in manifest["films"]:
            raise _Killed
        real_manifest(uri, manifest)

    monkeypatch.setattr(ingest, "write_manifest", dying_manifest)
    with pytest.raises(_Killed):
        ingest.run_ingest([alpha, beta], out, cfg)
    monkeypatch.undo()
    assert list((Path(out) / "frames" / "beta").rglob("*.parquet"))  # on storage ...
    assert (Path(out) / MANIFEST_NAME).read_bytes() == before  # ... but not committed
    assert load_frames(out).films == ["alpha"]

    # 3. Re-running finishes beta, skips alpha, and leaves no leftovers.
    summary = ingest.run_ingest([alpha, beta], out, cfg)
    assert (summary["ok"], summary["skipped"], summary["failed"]) == (2, 1, 0)
    manifest = json.loads((Path(out) / MANIFEST_NAME).read_text())
    _check_dataset(out, films, manifest)
    assert len(manifest["films"]["beta"]["shards"]) == -(-films["good"]["beta"][1]["frames"] // 5)
    assert not list((Path(out) / ingest.STAGING_DIR).rglob("*.parquet"))


def test_s3_ingest_resume_and_bad_object(ray_local, s3_env, films):
    base = s3_env.uri("ingest-test")
    for name, (path, _) in films["good"].items():
        storage.upload(path, f"{base}/films/{name}.mp4")
    storage.upload(films["bad"] / "notes.mp4", f"{base}/films/notes.mp4")
    out = f"{base}/ds"
    argv = ["--films", f"{base}/films/*.mp4", f"{base}/films/gone.mp4", "--out", out]
    rc, manifest = _run(argv)
    assert rc == 1
    assert manifest["films"]["notes"]["status"] == "failed"
    gone = manifest["films"]["gone"]
    assert gone["status"] == "failed" and "gone.mp4" in gone["reason"] and "no such" in gone["reason"]
    good = {"films": films["good"], "good": films["good"]}
    _check_dataset(out, good, manifest)
    fs, root = storage.filesystem_for(out)
    assert fs.get_file_info(f"{root}/{ingest.STAGING_DIR}").type == pafs.FileType.NotFound
    summary = ingest.run_ingest([f"{base}/films/alpha.mp4", f"{base}/films/beta.mp4"], out,
                                ingest.IngestConfig(size_px=SIZE))  # fmt: skip
    assert (summary["ok"], summary["skipped"], summary["failed"]) == (2, 2, 0)


def test_ray_dataset_readers(ray_local, films, tmp_path):
    from lcmftn.data.pairs import WindowConfig
    from workflows.data import read_frames_dataset, read_pair_dataset

    out = str(tmp_path / "ds")
    alpha = films["good"]["alpha"]
    assert ingest.run_ingest([str(alpha[0])], out, ingest.IngestConfig(size_px=SIZE))["ok"] == 1
    # a shard on storage that the manifest does not list is never read
    stray = Path(out) / "frames" / "ghost" / "v" / "part-00000.parquet"
    stray.parent.mkdir(parents=True)
    committed = json.loads((Path(out) / MANIFEST_NAME).read_text())["films"]["alpha"]["shards"][0]
    stray.write_bytes((Path(out) / committed).read_bytes())
    frames = read_frames_dataset(out)
    assert frames.count() == alpha[1]["frames"]
    assert set(frames.unique("film")) == {"alpha"}

    window = WindowConfig(width_frames=6, stride_frames=3)
    pairs = read_pair_dataset(out, window, image_size_px=48, augment=True, seed=1).take_all()
    expected = sum(len(sample_pairs(s, window)) for s in load_frames(out))
    assert len(pairs) == expected > 0
    row = pairs[0]
    assert row["s_p"].shape == (1, 48, 48) and row["c_n"].shape == (3, 48, 48)
    assert row["c_p"].dtype == np.float32 and 0.0 <= row["c_p"].min() and row["c_p"].max() <= 1.0
    assert row["frame_n"] - row["frame_p"] <= window.width_frames - 1
    shot_of = {int(s.frames[i]): s.shot_id for s in load_frames(out) for i in range(len(s))}
    assert all(shot_of[r["frame_p"]] == shot_of[r["frame_n"]] == r["shot_id"] for r in pairs)


def sample_pairs(shot, window):
    from lcmftn.data.pairs import sample_window_pairs

    return sample_window_pairs(len(shot), window, holds=shot.holds)


@pytest.mark.slow
def test_ray_job_submit(films, tmp_path):
    """The documented cluster path: `ray start --head` + `ray job submit -- python -m workflows.ingest`."""
    import signal
    import time

    from infra.local.seaweedfs import pick_ports

    ray_bin = Path(sys.executable).with_name("ray")
    tmp = Path(tempfile.mkdtemp(prefix="rj", dir="/tmp"))
    # Private agent ports: the dashboard agent's default 52365 is shared by every Ray on the
    # machine; when another one holds it the head's agent dies (EADDRINUSE in
    # dashboard_agent.log) and every submission answers "No available agent to submit job".
    gcs, dash, agent, agent_grpc, renv = pick_ports(5)
    env = dict(os.environ, RAY_TMPDIR=str(tmp), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               PATH=f"{ray_bin.parent}:{os.environ['PATH']}")  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    if (Path.home() / ".ray" / "auth_token").exists():
        env["RAY_AUTH_MODE"] = "token"
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2",
                             "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                             "--node-ip-address=127.0.0.1", f"--temp-dir={tmp}",
                             f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
                             f"--runtime-env-agent-port={renv}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    out = tmp_path / "ds"
    try:
        env["RAY_ADDRESS"] = f"http://127.0.0.1:{dash}"
        cmd = [str(ray_bin), "job", "submit", "--working-dir", str(REPO), "--", "python", "-m",
               "workflows.ingest", "--films", str(films["good"]["alpha"][0]), "--out", str(out),
               "--size", str(SIZE)]  # fmt: skip
        deadline = time.monotonic() + 90
        while True:  # the dashboard takes a few seconds to come up
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
            if proc.returncode == 0 or time.monotonic() > deadline or "Job '" in proc.stdout:
                break
            time.sleep(3)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert load_frames(str(out)).films == ["alpha"]
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def test_bad_cli_values_and_corrupt_manifest_stop_before_ray(tmp_path, capsys):
    # A typo in --lineart/--detector is a usage error, not one failed film per input.
    for flag in ("--lineart", "--detector"):
        with pytest.raises(SystemExit) as exc:
            ingest.main(["--films", str(tmp_path / "f.mp4"), "--out", str(tmp_path / "o"), flag, "nope"])
        assert exc.value.code == 2
        assert "invalid choice: 'nope'" in capsys.readouterr().err
    # A corrupt manifest is named and left alone (rewriting it would forget committed films).
    out = tmp_path / "ds"
    out.mkdir()
    (out / MANIFEST_NAME).write_text('{"films": {"alpha": {"status": "ok"')
    assert ingest.main(["--films", str(tmp_path / "f.mp4"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out / MANIFEST_NAME}" in err and "not valid JSON" in err
    assert (out / MANIFEST_NAME).read_text() == '{"films": {"alpha": {"status": "ok"'


@pytest.mark.parametrize("films, out, bad", [
    (["s3:///x.mp4"], "OUT", "s3:///x.mp4"),
    (["FILM"], "s3://", "s3://"),
    (["FILM"], "s3:///datasets/v1", "s3:///datasets/v1"),
])
def test_s3_uri_without_bucket_is_a_usage_error_before_ray(tmp_path, capsys, monkeypatch,
                                                           films, out, bad):
    import workflows.common

    def no_ray(*a, **k):
        raise AssertionError("Ray must not start for a usage error")

    monkeypatch.setattr(workflows.common, "ensure_ray", no_ray)
    subst = {"OUT": str(tmp_path / "o"), "FILM": str(tmp_path / "f.mp4")}
    films = [subst.get(f, f) for f in films]
    with pytest.raises(SystemExit) as exc:
        ingest.main(["--films", *films, "--out", subst.get(out, out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert repr(bad) in err and "without a bucket" in err
    assert not (tmp_path / "o").exists()
