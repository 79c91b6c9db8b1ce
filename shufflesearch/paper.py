"""The published numbers of ShuffleNet v1, as data: the one place tests, presets and reports read them.

Sources: Zhang, Zhou, Lin, Sun, "ShuffleNet: An Extremely Efficient Convolutional Neural
Network for Mobile Devices" (CVPR 2018, arXiv 1707.01083), and the authors' official code
(megvii-model/ShuffleNet-Series, ShuffleNetV1). Pure Python: no imports, no logic.

>>> TABLE2_TOP1_ERROR_PCT[(3, 0.5)]
43.2
"""

__all__ = [
    "OFFICIAL_LAYOUTS",
    "TABLE1_COMPLEXITY_MFLOPS",
    "TABLE1_STAGE2_WIDTH",
    "TABLE1_STEM_WIDTH",
    "TABLE2_BUDGETS_MFLOPS",
    "TABLE2_SCALES",
    "TABLE2_TOP1_ERROR_PCT",
    "TABLE8_DEVICE",
    "TABLE8_LATENCY_MS",
]

# Table 1: Stage2 output width at 1x for each group count (Stage3 and Stage4 double it),
# the stem's width, and the complexity the paper prints (MFLOPs = multiply-adds, 224 px).
TABLE1_STAGE2_WIDTH = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}
TABLE1_STEM_WIDTH = 24
TABLE1_COMPLEXITY_MFLOPS = {1: 143, 2: 140, 3: 137, 4: 133, 8: 137}

# (groups, scale): (stem, Stage2, Stage3, Stage4). The official code for g=3 and g=8 (every
# scale it ships); Table 1 for the 1x models of g=1, 2, 4.
OFFICIAL_LAYOUTS = {
    (3, 0.5): (12, 120, 240, 480),
    (3, 1.0): (24, 240, 480, 960),
    (3, 1.5): (24, 360, 720, 1440),
    (3, 2.0): (48, 480, 960, 1920),
    (8, 0.5): (16, 192, 384, 768),
    (8, 1.0): (24, 384, 768, 1536),
    (8, 1.5): (24, 576, 1152, 2304),
    (8, 2.0): (48, 768, 1536, 3072),
    (1, 1.0): (24, 144, 288, 576),
    (2, 1.0): (24, 200, 400, 800),
    (4, 1.0): (24, 272, 544, 1088),
}

# Table 2: ImageNet top-1 error (%) by (groups, scale), in the paper's row order (1x, 0.5x,
# 0.25x; g = 1, 2, 3, 4, 8), and the complexity of each row (its budget ladder).
TABLE2_TOP1_ERROR_PCT = {
    (1, 1.0): 33.6, (2, 1.0): 32.7, (3, 1.0): 32.6, (4, 1.0): 32.8, (8, 1.0): 32.4,
    (1, 0.5): 45.1, (2, 0.5): 44.4, (3, 0.5): 43.2, (4, 0.5): 41.6, (8, 0.5): 42.3,
    (1, 0.25): 57.1, (2, 0.25): 56.8, (3, 0.25): 55.0, (4, 0.25): 54.2, (8, 0.25): 52.7,
}  # fmt: skip
TABLE2_SCALES = (0.25, 0.5, 1.0)
TABLE2_BUDGETS_MFLOPS = (13.0, 38.0, 140.0)  # the 0.25x, 0.5x and 1x rows

# Table 8: measured latency on a phone, single thread, batch 1, milliseconds.
TABLE8_DEVICE = "Qualcomm Snapdragon 820"
# (official preset name, input height, input width, ms)
TABLE8_LATENCY_MS = (
    ("shufflenet_v1_x0_5_g3", 224, 224, 15.2),
    ("shufflenet_v1_x0_5_g3", 480, 640, 87.4),
    ("shufflenet_v1_x0_5_g3", 720, 1280, 260.1),
    ("shufflenet_v1_x1_0_g3", 224, 224, 37.8),
    ("shufflenet_v1_x1_0_g3", 480, 640, 222.2),
    ("shufflenet_v1_x1_0_g3", 720, 1280, 684.5),
    ("shufflenet_v1_x2_0_g3", 224, 224, 108.8),
    ("shufflenet_v1_x2_0_g3", 480, 640, 617.0),
    ("shufflenet_v1_x2_0_g3", 720, 1280, 1857.6),
)
