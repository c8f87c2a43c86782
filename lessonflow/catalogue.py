"""Which tutorial chapter each lesson rebuilds, and what its model is, in a sentence: what a model card and a
registry entry open with.

Copied from the project's lesson catalogue, so a build never reads a file outside the project. A lesson
missing here still gets a card and an entry, with its ``reference`` as the only pointer to its chapter.
"""

from __future__ import annotations

# The source tutorials by the number their chapters are cited with ("003 K", "001 §7.6").
TUTORIALS = {
    "000": "the Kaggle beginner tutorials",
    "001": "the PyTorch book",
    "002": "the PyTorch practice course (first version)",
    "003": "the PyTorch practice course (second version)",
    "004": "\"build your first deep learning framework\"",
}

# lesson id -> (what it is, the chapters it rebuilds: tutorial number and section)
LESSONS = {
    "fit-grid-search": ("exhaustive search of w (and b) for a line through three points", "002 §3.3, 003 A"),
    "gradient-descent": ("y = wx fitted by hand-written batch and per-sample gradient descent",
                         "002 §4.3/4.5, 003 B/C, 004 day 1"),
    "autograd-basics": ("y = wx and a quadratic fitted with torch autograd", "002 §5.3, 003 D/E, 000 \"Variables\""),
    "linreg-car-prices": ("nn.Linear(1, 1) fitted to car prices and sales", "000 \"线性回归\""),
    "linreg-optimizers": ("nn.Linear(1, 1) trained by SGD, Rprop and Adamax from the same initial weights",
                          "003 F, 002 §6, 001 §3.1.1"),
    "logistic-hours": ("logistic regression of passing on hours studied", "002 §7, 003 G"),
    "sign-logreg-scratch": ("NumPy logistic regression of sign-language digits 0 and 1", "000"),
    "sign-nn2-scratch": ("NumPy two-layer net (4096-3-1) on sign-language digits 0 and 1", "000"),
    "boston-knn": ("k-nearest-neighbour price from the number of rooms", "004 day 1"),
    "boston-random-search": ("random search of a price line over the number of rooms", "004 day 1"),
    "boston-gradient-descent": ("a price line over the number of rooms, fitted by hand-written gradients",
                                "004 day 1"),
    "boston-mini-framework": ("the lesson's own autograd framework beside the same net in PyTorch",
                              "004 days 2-3"),
    "diabetes-mlp": ("8-6-4-1 sigmoid MLP predicting diabetes from 8 features", "002 §8-9"),
    "diabetes-mlp-relu": ("8-6-4-2-1 ReLU MLP predicting diabetes from 8 features", "003 H/I"),
    "mnist-logreg": ("multinomial logistic regression of MNIST digits (Linear 784→10)", "000, 001 §3.2.1"),
    "mnist-ann": ("784-150-150-150-10 MLP (ReLU, Tanh, ELU) for MNIST digits", "000 \"人工神经网络\""),
    "mnist-mlp": ("784-512-256-128-64-10 ReLU MLP for MNIST digits", "002 §10.3, 003 J"),
    "mnist-cnn": ("two-convolution CNN (10, 20 channels) with a 64-unit head for MNIST digits", "003 K"),
    "mnist-cnn-book": ("two-convolution CNN (16, 32 channels, padded) for MNIST digits", "001 §7.6"),
    "mnist-inception": ("CNN with two Inception blocks for MNIST digits", "003 L"),
    "mnist-resnet": ("CNN with two residual blocks for MNIST digits", "003 M"),
    "mnist-lstm": ("two-layer LSTM reading an MNIST digit's rows as 28 time steps", "001 §9.6.1"),
    "mnist-bilstm": ("two-layer bidirectional LSTM reading an MNIST digit's rows", "001 §9.6.2"),
    "mnist-autoencoder": ("784-128-64-12-3 autoencoder of MNIST digits", "001 §10"),
    "mnist-gan": ("GAN (784-256-256-1 discriminator, 64-256-256-784 generator) drawing MNIST digits", "001 §11"),
    "cifar-resnet": ("ResNet of 3 stages × 4 residual blocks for CIFAR-10", "001 §7.7"),
    "cifar-fast": ("airbench94's small whitened CNN for CIFAR-10, beyond the tutorial", "001 §7.7 (its target)"),
    "stock-mlp": ("MLP forecasting tomorrow's close from a window of past days", "001 §13.1-13.2"),
    "stock-lstm": ("LSTM forecasting tomorrow's close from a window of past days", "001 §13.3"),
    "stock-updown": ("MLP predicting whether tomorrow's close is higher", "001 §13.2 \"涨跌\""),
    "stock-updown-lstm": ("LSTM predicting whether tomorrow's close is higher", "001 §13.3"),
    "style-transfer": ("Gatys' style transfer: LBFGS on a photo's pixels against VGG16 features[:8] losses",
                       "001 §8"),
    "rnn-scratch": ("NumPy 9-10-9 recurrent net with hand-written BPTT predicting the next letter", "001 §9.2"),
    "seq2seq-fra-eng": ("GRU encoder and attention GRU decoder translating French into English", "001 §12"),
    "cifar8-vgg": ("small VGG-style CNN trained on the CIFAR-10 classes other than cat and dog: "
                   "catdog-vgg16's frozen backbone (on the embedded profile, in place of ImageNet's VGG16)", "001 §7.5.4"),
    "cifar8-resnet": ("small ResNet trained on the CIFAR-10 classes other than cat and dog: "
                      "catdog-resnet50's frozen backbone (on the embedded profile, in place of ImageNet's ResNet50)",
                      "001 §7.5.6"),
    "catdog-vgg16": ("frozen VGG-style backbone with the seed's two-hidden-layer head for cat vs dog, "
                     "beside the same net trained from scratch on the same few images", "001 §4, §7.5.4"),
    "catdog-resnet50": ("frozen ResNet backbone with a new fc for cat vs dog, "
                        "beside the same net trained from scratch on the same few images", "001 §7.5.6"),
}


def describe(lesson_id: str, lesson: object) -> str:
    """One sentence: what the lesson's model is."""
    found = LESSONS.get(lesson_id)
    return found[0] if found else f"a {lesson.kind} lesson on {lesson.dataset}"  # type: ignore[attr-defined]


def chapters(lesson_id: str) -> str:
    """The chapters a lesson rebuilds, each with its tutorial's name."""
    found = LESSONS.get(lesson_id)
    if not found:
        return "not in the catalogue"
    cited = found[1]
    names = [f"{number} = {name}" for number, name in TUTORIALS.items() if number in cited]
    return f"{cited} ({'; '.join(names)})"
