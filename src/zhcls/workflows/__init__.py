"""End-to-end workflows composed from the layers below: train-and-report, the demo, sweeps."""
