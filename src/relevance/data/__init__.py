"""Readers and writers of the competition's JSON Lines files, and the synthetic demo generator."""
