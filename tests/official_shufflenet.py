"""An independent reference of megvii's official ShuffleNetV1 (megvii-model/ShuffleNet-Series,
ShuffleNetV1/blocks.py and network.py), written from that code's facts, not from ours: what
"official weights load unchanged" is checked against. Only the layers and the forward pass
(their init does not matter: tests give it random weights).
"""

import torch
import torch.nn.functional as F
from torch import nn

# network.py's stage_out_channels[1:]: stem, Stage2, Stage3, Stage4.
STAGE_OUT = {3: {"0.5x": [12, 120, 240, 480], "1.0x": [24, 240, 480, 960], "1.5x": [24, 360, 720, 1440],
                 "2.0x": [48, 480, 960, 1920]},
             8: {"0.5x": [16, 192, 384, 768], "1.0x": [24, 384, 768, 1536], "1.5x": [24, 576, 1152, 2304],
                 "2.0x": [48, 768, 1536, 3072]}}  # fmt: skip


class ShuffleV1Block(nn.Module):
    def __init__(self, inp, oup, *, group, first_group, mid_channels, stride):
        super().__init__()
        self.stride, self.group = stride, group
        outputs = oup - inp if stride == 2 else oup
        self.branch_main_1 = nn.Sequential(
            nn.Conv2d(inp, mid_channels, 1, 1, 0, groups=1 if first_group else group, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, mid_channels, 3, stride, 1, groups=mid_channels, bias=False),
            nn.BatchNorm2d(mid_channels),
        )
        self.branch_main_2 = nn.Sequential(
            nn.Conv2d(mid_channels, outputs, 1, 1, 0, groups=group, bias=False), nn.BatchNorm2d(outputs)
        )
        if stride == 2:
            self.branch_proj = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)

    def channel_shuffle(self, x):  # theirs: C viewed as (C/g, g), the two axes swapped
        n, c, h, w = x.shape
        x = x.reshape(n, c // self.group, self.group, h, w).permute(0, 2, 1, 3, 4)
        return x.reshape(n, c, h, w)

    def forward(self, old_x):
        x = self.branch_main_1(old_x)
        if self.group > 1:
            x = self.channel_shuffle(x)
        x = self.branch_main_2(x)
        if self.stride == 1:
            return F.relu(x + old_x)
        return torch.cat((self.branch_proj(old_x), F.relu(x)), 1)


class OfficialShuffleNetV1(nn.Module):
    def __init__(self, n_class=1000, model_size="1.0x", group=3):
        super().__init__()
        self.stage_out_channels = [-1, *STAGE_OUT[group][model_size]]
        input_channel = self.stage_out_channels[1]
        self.first_conv = nn.Sequential(
            nn.Conv2d(3, input_channel, 3, 2, 1, bias=False), nn.BatchNorm2d(input_channel), nn.ReLU(inplace=True)
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        features = []
        for stage, repeats in enumerate([4, 8, 4]):
            output_channel = self.stage_out_channels[stage + 2]
            for i in range(repeats):
                features.append(ShuffleV1Block(input_channel, output_channel, group=group,
                                               first_group=stage == 0 and i == 0, mid_channels=output_channel // 4,
                                               stride=2 if i == 0 else 1))  # fmt: skip
                input_channel = output_channel
        self.features = nn.Sequential(*features)
        self.globalpool = nn.AvgPool2d(7)
        self.classifier = nn.Sequential(nn.Linear(self.stage_out_channels[-1], n_class, bias=False))

    def forward(self, x):
        x = self.globalpool(self.features(self.maxpool(self.first_conv(x))))
        return self.classifier(x.contiguous().view(-1, self.stage_out_channels[-1]))


def official_checkpoint(group=3, model_size="0.5x", seed=0, dataparallel=True):
    """A random official network (BN statistics too) and its weights as their training saved them:
    {'state_dict': ...} from nn.DataParallel (keys prefixed 'module.')."""
    torch.manual_seed(seed)
    model = OfficialShuffleNetV1(model_size=model_size, group=group).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                for tensor, low, high in [(m.weight, 0.5, 1.5), (m.bias, -0.1, 0.1), (m.running_mean, -0.1, 0.1),
                                          (m.running_var, 0.5, 1.5)]:  # fmt: skip
                    tensor.uniform_(low, high)
    prefix = "module." if dataparallel else ""
    return model, {"state_dict": {prefix + k: v for k, v in model.state_dict().items()}}
