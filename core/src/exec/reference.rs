//! Hand-written reference networks: He et al.'s CIFAR ResNet-(6n+2) with option-A shortcuts,
//! written out layer by layer in tch. The exactness tests compare the executor against it (same
//! weights, same outputs and gradients) and the step-time benchmark times both.

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// A 3×3 convolution without bias.
pub fn conv3(p: nn::Path, i: i64, o: i64, stride: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: 1,
        bias: false,
        ..Default::default()
    };
    nn::conv2d(p, i, o, 3, cfg)
}

/// conv3x3-BN-ReLU-conv3x3-BN, the residual branch of He et al.'s basic block.
#[derive(Debug)]
pub struct Basic {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
}

impl Basic {
    pub fn new(p: &nn::Path, i: i64, o: i64, stride: i64) -> Basic {
        Basic {
            conv1: conv3(p / "conv1", i, o, stride),
            bn1: nn::batch_norm2d(p / "bn1", o, Default::default()),
            conv2: conv3(p / "conv2", o, o, 1),
            bn2: nn::batch_norm2d(p / "bn2", o, Default::default()),
        }
    }
    /// The residual branch applied to `x` (N, i, H, W) → (N, o, H/stride, W/stride).
    pub fn f(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .apply(&self.conv2)
            .apply_t(&self.bn2, train)
    }
}

/// He et al.'s CIFAR ResNet-(6n+2) with option-A shortcuts, written out by hand.
#[derive(Debug)]
pub struct HandResNet {
    stem: nn::Conv2D,
    stem_bn: nn::BatchNorm,
    /// (block, stride, input channels, output channels)
    blocks: Vec<(Basic, i64, i64, i64)>,
    fc: nn::Linear,
}

impl HandResNet {
    /// ResNet-(6n+2) for 3-channel 32×32 images, variables named like the executor's.
    pub fn new(p: &nn::Path, n: usize, classes: i64) -> HandResNet {
        let stem = conv3(p / "stem" / "conv", 3, 16, 1);
        let stem_bn = nn::batch_norm2d(p / "stem" / "bn", 16, Default::default());
        let mut blocks = Vec::new();
        let mut c = 16;
        for (s, w) in [16i64, 32, 64].into_iter().enumerate() {
            for j in 0..n {
                let stride = if s > 0 && j == 0 { 2 } else { 1 };
                let b = Basic::new(&(p / format!("s{s}") / format!("b{j}")), c, w, stride);
                blocks.push((b, stride, c, w));
                c = w;
            }
        }
        let fc = nn::linear(p / "head" / "fc", 64, classes, Default::default());
        HandResNet {
            stem,
            stem_bn,
            blocks,
            fc,
        }
    }
}

impl ModuleT for HandResNet {
    /// (N, 3, 32, 32) → logits (N, classes).
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.apply(&self.stem).apply_t(&self.stem_bn, train).relu();
        for (b, stride, i, o) in &self.blocks {
            let shortcut = if *stride == 1 && i == o {
                h.shallow_clone()
            } else {
                // option A: subsample, pad channels with zeros (half on each side)
                let pad = (o - i) / 2;
                h.slice(2, 0, None, *stride)
                    .slice(3, 0, None, *stride)
                    .constant_pad_nd([0, 0, 0, 0, pad, o - i - pad])
            };
            h = (b.f(&h, train) + shortcut).relu();
        }
        h.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc)
    }
}
