"""Frames, shots, holds, line art, window pairs and the synthetic film generator (pure)."""
