"""Generators, discriminators and the CMFT module (paper §3). See ``registry`` for names."""
