"""From-scratch models in NumPy: every gradient is written by hand (seeds 000 and 004).

No autograd anywhere in this package; ``tests/test_scratch.py`` checks each
hand-written gradient against PyTorch's autograd on random data.
"""
