"""Detection: train an object detector from box annotations, evaluate it (mAP), and measure the
detect → crop → classify pipeline against whole-photo classification.

geometry.py and matching.py are pure (NumPy only) so the torch-free serving path may import them;
everything else here needs torch/torchvision.
"""
