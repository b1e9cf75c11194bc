"""Tests of vigil.client and ``vigil client``."""
