"""Data layer: real dataset sources, checksummed snapshots, sequential deletion protocols."""
