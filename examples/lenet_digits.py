"""LeNet-5 on real handwritten digits with fastconv: a tutorial you can run.

    pip install ".[examples]"
    python examples/lenet_digits.py --plot lenet.png   # the same as: python -m fastconv demo

The code lives in the package, so that ``python -m fastconv demo`` runs it
from an installed fastconv too: read ``fastconv/_demo.py`` top to bottom.
Its sections, and what each shows:

1. **Data** (``load_digits_28``): scikit-learn's 1,797 scanned 8x8 digits
   (shipped inside scikit-learn, no download), upsampled to 28x28 with a
   bilinear matrix on each side (``A @ image @ A.T``), standardised, split
   80/20 with every digit in proportion.
2. **What fastconv leaves to you** (``ReLU``, ``Flatten``, ``Linear``,
   ``softmax_cross_entropy``, ``SGD``): a few lines of NumPy each, following
   ``fastconv.nn``'s protocol (``layer(x)``, ``layer.backward(grad)``,
   ``named_parameters()``), so they chain with fastconv's layers.
3. **LeNet-5** (``lenet5``): ``fastconv.nn.Sequential`` of ``nn.Conv2d``,
   ``nn.MaxPool2d`` and the NumPy layers; its state_dict keys ("0.weight",
   ..., "11.bias") are those of the same ``torch.nn.Sequential``.
4. **Training** (``train``): one loop over either backend; ``--backend torch``
   loads the fastconv network's initial weights into the identical PyTorch
   network, so both start from the same point and see the same batches.
5. **The picture** (``plot``: filters, feature maps, learning curves) and
   **transfer learning** (``transfer``: pretrain on 0-4, freeze the conv
   layers with ``requires_grad = False``, fine-tune a new head on a few 5-9s).

The network in a few lines, with this module's pieces:

>>> from fastconv._demo import lenet5
>>> model = lenet5(num_classes=10, seed=0)
>>> [name for name, _, _ in model.named_parameters()][:4]
['0.weight', '0.bias', '3.weight', '3.bias']
"""
import sys

from fastconv._demo import main

if __name__ == "__main__":
    sys.exit(main())
