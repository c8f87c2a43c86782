"""The model registry: every architecture a lesson can name in ``params.yaml``.

A model is built from the data's shape (``in_shape``, ``num_classes``) plus the
lesson's own keyword arguments, so one class serves every lesson that shares the
architecture (``mnist-logreg``, ``mnist-ann`` and ``mnist-mlp`` are all ``mlp``).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from lessonflow.errors import ParamsError

if TYPE_CHECKING:
    from lessonflow.schema import ModelParams

MODELS: dict[str, type[nn.Module]] = {}
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "sigmoid": nn.Sigmoid,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
}
DATA_ARGS = ("in_shape", "num_classes")


def register(name: str):
    def add(cls: type[nn.Module]) -> type[nn.Module]:
        MODELS[name] = cls
        return cls
    return add


def check_model_args(name: str, kwargs: dict) -> None:
    """Fail early, naming the allowed names, when params ask for a model or argument that does not exist."""
    if name not in MODELS:
        raise ValueError(f"name: unknown model {name!r}; allowed: {', '.join(sorted(MODELS))}")
    signature = inspect.signature(MODELS[name].__init__)
    allowed = [p for p in signature.parameters if p not in ("self", *DATA_ARGS)]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown argument of model {name!r}; allowed: {', '.join(allowed) or 'none'}")
    if "activations" in kwargs:
        bad = [a for a in kwargs["activations"] if a not in ACTIVATIONS]
        if bad:
            raise ValueError(f"activations: unknown activation {bad[0]!r}; allowed: {', '.join(ACTIVATIONS)}")


def require_model(model: ModelParams, name: str, trainer: str) -> None:
    """For a kind that trains one architecture only: ``model`` must name it, with arguments it takes."""
    if model.name != name:
        raise ParamsError(f"model.name: {trainer} trains the {name!r} net (got {model.name!r}); allowed: {name}")
    try:
        check_model_args(model.name, model.kwargs())
    except ValueError as err:
        raise ParamsError(f"model.{err}") from None


def build_model(name: str, kwargs: dict, *, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    check_model_args(name, kwargs)
    model = MODELS[name](in_shape=tuple(in_shape), num_classes=num_classes, **kwargs)
    # recorded with the trained model (records.model_facts), so lessonflow.load can build it again without the data
    model.built_for = {"input_shape": list(in_shape), "outputs": num_classes}
    return model


def model_for(model: ModelParams, data: dict) -> nn.Module:
    """The params' model sized for a prepared image or feature dataset: its input shape and its classes."""
    return build_model(model.name, model.kwargs(), in_shape=tuple(data["x_train"].shape[1:]),
                       num_classes=len(data["classes"]))


def restored(model: nn.Module, state: dict[str, torch.Tensor], device: torch.device) -> nn.Module:
    """A built model with the weights training saved, on ``device``: how every evaluation starts."""
    model.load_state_dict(state)
    return model.to(device)


@register("mlp")
class MLP(nn.Module):
    """Fully connected net on flattened pixels; with no hidden layers it is multinomial logistic regression."""

    def __init__(self, in_shape, num_classes, hidden: list[int] = (), activations: list[str] | None = None):
        super().__init__()
        activations = list(activations or ["relu"] * len(hidden))
        if len(activations) != len(hidden):
            raise ValueError(f"activations: {len(activations)} given for {len(hidden)} hidden layers")
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(in_shape)
        for size, act in zip(hidden, activations):
            layers += [nn.Linear(width, size), ACTIVATIONS[act]()]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


@register("binary_mlp")
class BinaryMLP(MLP):
    """An MLP with one sigmoid output unit, the tutorials' BCE classifiers (Pima diabetes 8-6-4-1).

    It returns the two logits [0, z]: softmax([0, z]) = [1 − σ(z), σ(z)], so cross-entropy
    on them is exactly BCE on σ(z), and the shared classifier loop and scoring apply unchanged.
    """

    def __init__(self, in_shape, num_classes, hidden: list[int] = (), activations: list[str] | None = None):
        if num_classes != 2:
            raise ValueError(f"binary_mlp needs a dataset with 2 classes, this one has {num_classes}")
        super().__init__(in_shape, 1, hidden, activations)

    def forward(self, x):
        z = self.net(x)
        return torch.cat([torch.zeros_like(z), z], dim=1)


def _flat_size(features: nn.Module, in_shape) -> int:
    """Size the classifier head from a dry forward pass instead of hand-computed arithmetic."""
    with torch.no_grad():
        return features(torch.zeros(1, *in_shape)).flatten(1).shape[1]


def dense_head(width: int, hidden: list[int], num_classes: int) -> nn.Sequential:
    """Flatten, then Linear+ReLU per ``hidden`` size, then the output Linear: the head of every conv net here."""
    layers: list[nn.Module] = [nn.Flatten()]
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@register("cnn")
class SmallCNN(nn.Module):
    """Two conv/ReLU/max-pool blocks and a head; covers both tutorial CNNs through its arguments.

    Course (003 K): channels [10, 20], kernel 5, padding 0, head [64].
    Book (001 §7.6): channels [16, 32], kernel 5, padding 2, no hidden head layer.
    """

    def __init__(self, in_shape, num_classes, channels: list[int] = (10, 20), kernel: int = 5,
                 padding: int = 0, head: list[int] = (64,)):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_shape[0]
        for out in channels:
            layers += [nn.Conv2d(width, out, kernel, padding=padding), nn.ReLU(), nn.MaxPool2d(2)]
            width = out
        self.features = nn.Sequential(*layers)
        self.head = dense_head(_flat_size(self.features, in_shape), head, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


@register("lstm")
class LSTMHead(nn.Module):
    """An LSTM over a sequence, with a linear head on its last time step.

    The input's last two dimensions are (time, features): a stock window (N, days, F),
    or an image (N, 1, 28, 28) read as 28 rows of 28 pixels. The head reads the top
    layer's final state of each direction: with ``bidirectional``, the backward direction's
    output at the last time step has seen only that step, its final state the whole sequence.
    """

    def __init__(self, in_shape, num_classes, hidden: int = 100, num_layers: int = 1, bidirectional: bool = False):
        super().__init__()
        self.steps, features = in_shape[-2], in_shape[-1]
        self.directions = 2 if bidirectional else 1
        self.lstm = nn.LSTM(features, hidden, num_layers, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden * self.directions, num_classes)

    def forward(self, x):
        _, (final, _) = self.lstm(x.reshape(len(x), self.steps, -1))  # final: (layers * directions, N, hidden)
        top = final[-self.directions:]
        return self.head(top.transpose(0, 1).reshape(len(x), -1))


class BasicBlock(nn.Module):
    """He et al.'s basic block: two 3x3 conv+BN layers and a shortcut.

    A strided or widening block projects its shortcut with conv3x3+BN, as the tutorial does.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Identity() if stride == 1 and in_channels == out_channels else nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


@register("resnet_cifar")
class CifarResNet(nn.Module):
    """001 §7.7's ResNet: conv3x3+BN+ReLU, three stages of ``blocks`` residual blocks (16, 32, 64 channels,
    stride 2 entering stages 2 and 3), global average pooling (= AvgPool(8) on 32x32 input), Linear(64, classes).

    Fixed against the seed: its blocks strode in *both* convolutions (so stage 3 shrank the map
    fourfold and stage 2 not at all), and ``squeeze`` broke on a batch of one.
    """

    def __init__(self, in_shape, num_classes, blocks: int = 4, channels: list[int] = (16, 32, 64)):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_shape[0], channels[0], 3, padding=1, bias=False),
                                   nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True)]
        width = channels[0]
        for stage, out in enumerate(channels):
            for block in range(blocks):
                layers.append(BasicBlock(width, out, stride=2 if stage > 0 and block == 0 else 1))
                width = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


@register("vgg_small")
class SmallVGG(nn.Module):
    """VGG16's shape at CIFAR scale, for the transfer lessons' CPU-fast backbone (001 §7.5.4).

    ``features`` (pairs of 3x3 conv+ReLU, then a 2x2 max-pool, per entry of ``channels``; an
    adaptive average pool to ``pool`` x ``pool``; flattened) is what a transfer lesson freezes;
    ``classifier`` is the seed's head (Linear, ReLU, Dropout twice, then the output Linear) with
    its 4096 units scaled down to ``hidden``, as torchvision's VGG16 names both parts.
    ``batch_norm`` puts a BatchNorm after each conv (torchvision's ``vgg16_bn``), which lets a
    narrow net learn in the few epochs a CPU build affords.
    """

    def __init__(self, in_shape, num_classes, channels: list[int] = (16, 32, 64), pool: int = 2,
                 hidden: int = 128, dropout: float = 0.5, batch_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_shape[0]
        for out in channels:
            for conv_in in (width, out):
                layers += [nn.Conv2d(conv_in, out, 3, padding=1),
                           *([nn.BatchNorm2d(out)] if batch_norm else []), nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2))
            width = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(pool), nn.Flatten())
        self.classifier = nn.Sequential(
            nn.Linear(width * pool * pool, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


# ResNet50's layers before its fc, by torchvision's names: an ImageNet file's keys fit ``features`` unchanged
RESNET_TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")


@register("vgg16")
class TransferVGG16(nn.Module):
    """torchvision's VGG16 for the full profile's transfer lesson (001 §7.5.4): ``features``, the 13
    convolutions an ImageNet file fills, and the seed's head as ``classifier``: VGG's average
    pool (to 7 by 7), then 25088→``hidden``→ReLU→Dropout→``hidden``→ReLU→Dropout→classes.
    """

    def __init__(self, in_shape, num_classes, hidden: int = 4096, dropout: float = 0.5):
        from torchvision.models import vgg16

        super().__init__()
        self.features = vgg16(weights=None).features
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(7), nn.Flatten(), nn.Linear(512 * 7 * 7, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


@register("resnet50")
class TransferResNet50(nn.Module):
    """torchvision's ResNet50 for the full profile's transfer lesson (001 §7.5.6): every layer before
    its fc as ``features`` (under torchvision's names, global pool and flatten included) and the
    seed's ``fc = Linear(2048, classes)``.
    """

    def __init__(self, in_shape, num_classes):
        from torchvision.models import resnet50

        super().__init__()
        network = resnet50(weights=None)
        trunk = [(name, getattr(network, name)) for name in RESNET_TRUNK]
        self.features = nn.Sequential(OrderedDict([*trunk, ("flatten", nn.Flatten())]))
        self.fc = nn.Linear(network.fc.in_features, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


class InceptionA(nn.Module):
    """The course's Inception block (003 L): four branches run side by side, concatenated on channels.

    pool→1x1(24) | 1x1(16) | 1x1(16)→5x5(24) | 1x1(16)→3x3(24)→3x3(24), padded so every
    branch keeps the height and width: 24+16+24+24 = 88 channels out. The seed built every
    kernel 1x1 and never called the block; this one is the block its text describes.
    """

    OUT_CHANNELS = 88

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), nn.Conv2d(in_channels, 24, 1))
        self.branch_1x1 = nn.Conv2d(in_channels, 16, 1)
        self.branch_5x5 = nn.Sequential(nn.Conv2d(in_channels, 16, 1), nn.Conv2d(16, 24, 5, padding=2))
        self.branch_3x3 = nn.Sequential(nn.Conv2d(in_channels, 16, 1), nn.Conv2d(16, 24, 3, padding=1),
                                        nn.Conv2d(24, 24, 3, padding=1))

    def forward(self, x):
        branches = (self.branch_pool, self.branch_1x1, self.branch_5x5, self.branch_3x3)
        return torch.cat([branch(x) for branch in branches], dim=1)


@register("inception")
class InceptionNet(nn.Module):
    """003 L: per stage conv(kernel)→ReLU→MaxPool2→InceptionA; then one Linear on the flattened map.

    On MNIST: conv(1,10,5), InceptionA(10), conv(88,20,5), InceptionA(20), Linear(1408, 10);
    the 1408 comes from a dry forward pass, not from arithmetic in the source.
    """

    def __init__(self, in_shape, num_classes, channels: list[int] = (10, 20), kernel: int = 5):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_shape[0]
        for out in channels:
            layers += [nn.Conv2d(width, out, kernel), nn.ReLU(), nn.MaxPool2d(2), InceptionA(out)]
            width = InceptionA.OUT_CHANNELS
        self.features = nn.Sequential(*layers)
        self.head = dense_head(_flat_size(self.features, in_shape), [], num_classes)

    def forward(self, x):
        return self.head(self.features(x))


class ResidualBlock(nn.Module):
    """003 M's block: y = relu(conv1(x)); y = relu(conv2(y)); out = relu(y + x), 3x3 convs that keep the shape."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.conv1(x))
        return torch.relu(torch.relu(self.conv2(y)) + x)


@register("residual_cnn")
class ResidualCNN(nn.Module):
    """003 M: per stage conv(kernel)→ReLU→MaxPool2→ResidualBlock; a dense head (320→64→10 on MNIST)."""

    def __init__(self, in_shape, num_classes, channels: list[int] = (10, 20), kernel: int = 5,
                 head: list[int] = (64,)):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_shape[0]
        for out in channels:
            layers += [nn.Conv2d(width, out, kernel), nn.ReLU(), nn.MaxPool2d(2), ResidualBlock(out)]
            width = out
        self.features = nn.Sequential(*layers)
        self.head = dense_head(_flat_size(self.features, in_shape), head, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


def _linear_stack(widths: list[int], activation: Callable[[], nn.Module]) -> list[nn.Module]:
    """Linear layers through ``widths`` with ``activation()`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:]):
        layers += [nn.Linear(a, b), activation()]
    return layers[:-1]


@register("autoencoder")
class AutoEncoder(nn.Module):
    """001 §10: a Tanh MLP squeezes the image to a ``code``-sized vector (3, so it can be plotted)
    and a mirrored one rebuilds it, a Sigmoid keeping pixels in [0, 1].

    ``forward`` returns the reconstruction in the input's shape; ``encoder`` gives the code.
    ``num_classes`` is part of every zoo constructor; an autoencoder has no use for it.
    """

    def __init__(self, in_shape, num_classes, hidden: list[int] = (128, 64, 12), code: int = 3):
        super().__init__()
        widths = [math.prod(in_shape), *hidden, code]
        self.encoder = nn.Sequential(nn.Flatten(), *_linear_stack(widths, nn.Tanh))
        self.decoder = nn.Sequential(*_linear_stack(widths[::-1], nn.Tanh), nn.Sigmoid(),
                                     nn.Unflatten(1, tuple(in_shape)))

    def forward(self, x):
        return self.decoder(self.encoder(x))


@register("gan")
class GAN(nn.Module):
    """001 §11: a generator noise→``hidden``→image (Tanh, pixels in [-1, 1]) and a discriminator
    image→``hidden``→P(real) (Sigmoid), LeakyReLU(``slope``) inside both.

    One module holds the pair so that a lesson names one model; ``forward(z)`` generates.
    ``num_classes`` is part of every zoo constructor; an unconditional GAN has no use for it.
    """

    def __init__(self, in_shape, num_classes, noise: int = 64, hidden: list[int] = (256, 256), slope: float = 0.2):
        super().__init__()
        self.noise = noise
        pixels = math.prod(in_shape)
        leaky = functools.partial(nn.LeakyReLU, slope)
        self.generator = nn.Sequential(*_linear_stack([noise, *hidden, pixels], leaky), nn.Tanh(),
                                       nn.Unflatten(1, tuple(in_shape)))
        self.discriminator = nn.Sequential(nn.Flatten(), *_linear_stack([pixels, *hidden, 1], leaky), nn.Sigmoid(),
                                           nn.Flatten(0))

    def forward(self, z):
        return self.generator(z)


SOS, EOS = 0, 1  # the first two words of every vocabulary of a translation model (001 §12)


@register("attention_seq2seq")
class AttentionSeq2Seq(nn.Module):
    """001 §12: a GRU encoder and a GRU decoder that attends over the encoder's outputs, one word per step.

    ``in_shape`` is ``(source vocabulary size,)`` and ``num_classes`` the target vocabulary's. The encoder
    reads the whole sentence in one GRU call (the seed's loop of single steps, the same arithmetic); the
    decoder is the seed's ``AttnDecoderRNN``: attention weights over ``max_length`` positions from the
    embedded word and the hidden state, ReLU, GRU, log-softmax.
    """

    def __init__(self, in_shape, num_classes, hidden: int = 256, dropout: float = 0.1, max_length: int = 10):
        super().__init__()
        self.max_length = max_length
        self.source_embedding = nn.Embedding(in_shape[0], hidden)
        self.encoder = nn.GRU(hidden, hidden)
        self.embedding = nn.Embedding(num_classes, hidden)
        self.dropout = nn.Dropout(dropout)
        self.attn = nn.Linear(hidden * 2, max_length)
        self.attn_combine = nn.Linear(hidden * 2, hidden)
        self.gru = nn.GRUCell(hidden, hidden)  # the seed's one-layer GRU fed one step: the same weights and arithmetic
        self.out = nn.Linear(hidden, num_classes)

    def encode(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's outputs padded to ``max_length`` rows, and its last hidden state (the decoder's first)."""
        outputs, hidden = self.encoder(self.source_embedding(source).unsqueeze(1))
        padded = outputs.new_zeros(self.max_length, outputs.shape[-1])
        padded[:len(source)] = outputs[:, 0]
        return padded, hidden[0]

    def step(self, word: torch.Tensor, hidden: torch.Tensor, encoded: torch.Tensor):
        """One decoder step: log-probabilities of the next word, the new hidden state, the attention weights."""
        embedded = self.dropout(self.embedding(word).view(1, -1))
        weights = torch.softmax(self.attn(torch.cat((embedded, hidden), 1)), dim=1)
        combined = self.attn_combine(torch.cat((embedded, weights @ encoded), 1))
        hidden = self.gru(torch.relu(combined), hidden)
        return torch.log_softmax(self.out(hidden), dim=1), hidden, weights

    def forward(self, source: torch.Tensor) -> tuple[list[int], torch.Tensor]:
        """Greedy translation of one sentence (word indices, ``EOS`` last): the words and each step's attention."""
        encoded, hidden = self.encode(source)
        word, words, attention = torch.tensor([SOS], device=source.device), [], []
        for _ in range(self.max_length):
            log_probs, hidden, weights = self.step(word, hidden, encoded)
            attention.append(weights[0])
            word = log_probs.argmax(1)
            words.append(int(word))
            if words[-1] == EOS:
                break
        return words, torch.stack(attention)


class FrozenScaleBatchNorm(nn.BatchNorm2d):
    """Batch norm whose scale stays 1 (only the shift learns): airbench94's choice, one fewer knob per channel."""

    def __init__(self, width: int, momentum: float = 0.6):
        super().__init__(width, eps=1e-12, momentum=1 - momentum)
        self.weight.requires_grad = False


def _dirac_conv(c_in: int, c_out: int) -> nn.Conv2d:
    """A 3x3 conv whose first ``c_in`` filters start as the identity, so a fresh net passes its input through."""
    conv = nn.Conv2d(c_in, c_out, 3, padding="same", bias=False)
    nn.init.dirac_(conv.weight.data[:c_in])
    return conv


class ConvGroup(nn.Sequential):
    """conv, max-pool, BN, GELU, conv, BN, GELU: one resolution stage of airbench94."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(_dirac_conv(c_in, c_out), nn.MaxPool2d(2), FrozenScaleBatchNorm(c_out), nn.GELU(),
                         _dirac_conv(c_out, c_out), FrozenScaleBatchNorm(c_out), nn.GELU())


@register("airbench")
class AirbenchNet(nn.Module):
    """airbench94's net (Keller Jordan, cifar10-airbench): a frozen 2x2 whitening conv, three conv groups, a scaled linear head.

    ``widths`` defaults to airbench94's (64, 256, 256); on a CPU narrower stages buy epochs
    (BENCHMARKS.md, CIFAR-fast). ``whiten`` must be called with training images before training:
    the first layer is not learned but set from the eigenvectors of their 2x2 patch covariance.
    """

    def __init__(self, in_shape, num_classes, widths: list[int] = (64, 256, 256), scale: float = 1 / 9):
        super().__init__()
        channels, kernel = in_shape[0], 2
        self.whitening = nn.Conv2d(channels, 2 * channels * kernel ** 2, kernel, padding=0, bias=True)
        self.whitening.weight.requires_grad = False
        stages, width = [], self.whitening.out_channels
        for out in widths:
            stages.append(ConvGroup(width, out))
            width = out
        self.body = nn.Sequential(nn.GELU(), *stages, nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(width, num_classes, bias=False)
        self.scale = scale

    @torch.no_grad()
    def whiten(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the first layer to ZCA-like filters of ``images`` (normalised float, N x C x H x W), ± each eigenvector."""
        c, (h, w) = images.shape[1], self.whitening.kernel_size
        patches = images.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c * h * w).float()
        eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
        filters = (eigenvectors.T.reshape(-1, c, h, w) / torch.sqrt(eigenvalues + eps).view(-1, 1, 1, 1)).flip(0)
        self.whitening.weight.copy_(torch.cat([filters, -filters]))

    def forward(self, x):
        return self.head(self.body(self.whitening(x))) * self.scale
