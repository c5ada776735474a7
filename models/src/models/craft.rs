//! CRAFT, the scene-text detector of vemo-mini's spotting stage: the network, EasyOCR's
//! pre-processing and the public detection API.
//!
//! A port of `CRAFT` from easyocr 1.7.2 (`easyocr/craft.py`, `easyocr/model/modules.py`
//! `vgg16_bn`) for the weights `craft_mlt_25k.pth`, with its state-dict names (`basenet.sliceN.I`,
//! `upconvN.conv.I`, `conv_cls.I`; the checkpoint's `module.` prefix stripped). A VGG16-BN
//! backbone split in five slices (slice 5: a stride-1 3x3 max-pool, a dilation-6 3x3
//! convolution and a 1x1 convolution), a U-Net decoder (bilinear upsampling, align_corners =
//! false, to the skip's size; concatenation; `double_conv` blocks) and a head giving two maps at
//! half the input resolution: the region (character) score and the affinity (link) score. Batch
//! norms are folded into the convolutions at load (eval mode). Pre-processing follows
//! `easyocr/imgproc.py` (`resize_aspect_ratio`, `normalizeMeanVariance`); the boxes come from
//! [`super::craft_postprocess`].

use std::path::Path;

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::craft_postprocess::detections;
pub use super::craft_postprocess::{Detection, ScoreMaps};

/// Batch-norm epsilon of torchvision's `BatchNorm2d`.
const BN_EPS: f64 = 1e-5;
/// The canvas is padded to a multiple of this (the network's total stride, 16, times the
/// decoder's exact 2x upsampling steps).
const CANVAS_MULTIPLE: usize = 32;
/// ImageNet mean and standard deviation, times 255 (`normalizeMeanVariance`).
const MEAN_255: [f32; 3] = [0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0];
const STD_255: [f32; 3] = [0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0];

/// Detection settings; the defaults are those of EasyOCR's `Reader.readtext`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CraftConfig {
    /// Longest side of the network input, in pixels (2560). Larger images are shrunk to it;
    /// memory and time grow with its square.
    pub canvas_size: usize,
    /// Magnification of the image before the canvas limit applies (1.0). Above 1 finds smaller
    /// text at a quadratic cost.
    pub mag_ratio: f64,
    /// A component is kept when its highest region score reaches this (0.7).
    pub text_threshold: f32,
    /// Affinity score above which a pixel links characters into a word (0.4).
    pub link_threshold: f32,
    /// Region score above which a pixel belongs to text (0.4).
    pub low_text: f32,
    /// Images whose canvases have the same size run through the network together while their
    /// canvases hold at most this many pixels in all (2^21, e.g. two 1024x1024 canvases).
    pub batch_pixels: usize,
}

impl Default for CraftConfig {
    fn default() -> Self {
        Self {
            canvas_size: 2560,
            mag_ratio: 1.0,
            text_threshold: 0.7,
            link_threshold: 0.4,
            low_text: 0.4,
            batch_pixels: 1 << 21,
        }
    }
}

/// Floats in one band's im2col matrix on CPU (32 MiB): bounds the memory of a convolution
/// whatever the canvas size.
const BAND_FLOATS: usize = 1 << 23;

/// A stride-1 convolution with "same" output size, its batch norm (if any) folded in, and an
/// optional ReLU after it.
struct Conv {
    weight: Tensor,
    /// The weight as an (out, kh * kw * in) matrix, taps outermost (the CPU path's layout).
    matrix: Tensor,
    bias: Tensor,
    padding: usize,
    dilation: usize,
    relu: bool,
}

impl Conv {
    /// Loads convolution `conv` of `vb`, and folds batch norm `bn` into it when given.
    fn load(
        vb: &VarBuilder,
        conv: &str,
        bn: Option<&str>,
        padding: usize,
        dilation: usize,
        relu: bool,
    ) -> candle_core::Result<Self> {
        let mut weight = vb.get_unchecked_dtype(&format!("{conv}.weight"), DType::F32)?;
        let out = weight.dim(0)?;
        let mut bias = vb.get(out, &format!("{conv}.bias"))?;
        if let Some(bn) = bn {
            let vb = vb.pp(bn);
            let var = vb.get(out, "running_var")?;
            let scale = vb.get(out, "weight")?.div(&(var + BN_EPS)?.sqrt()?)?;
            let shift = vb.get(out, "bias")?;
            let mean = vb.get(out, "running_mean")?;
            weight = weight.broadcast_mul(&scale.reshape((out, 1, 1, 1))?)?;
            bias = ((bias - mean)? * &scale)?.add(&shift)?;
        }
        let matrix = weight
            .permute((0, 2, 3, 1))?
            .flatten_from(1)?
            .contiguous()?;
        Ok(Self {
            weight,
            matrix,
            bias,
            padding,
            dilation,
            relu,
        })
    }
}

impl Conv {
    /// The CPU path: a matrix product per band of output rows over an im2col matrix built from
    /// shifted views (contiguous row copies), instead of candle's per-pixel im2col; 3-6x
    /// faster on the wide, shallow layers of a large canvas.
    fn forward_cpu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (out, k) = (self.weight.dim(0)?, self.weight.dim(3)?);
        let clamp = self.relu.then_some((0f32, f32::MAX));
        if k == 1 {
            let y = self.matrix.broadcast_matmul(&x.reshape((b, c, h * w))?)?;
            return vemo_kernels::bias_clamp(&y, &self.bias, clamp)?.reshape((b, out, h, w));
        }
        let (p, d) = (self.padding, self.dilation);
        let x = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
        let rows = (BAND_FLOATS / (b * k * k * c * w)).clamp(1, h);
        let mut bands = Vec::with_capacity(h.div_ceil(rows));
        for top in (0..h).step_by(rows) {
            let r = rows.min(h - top);
            let taps = (0..k * k)
                .map(|t| x.narrow(2, top + t / k * d, r)?.narrow(3, t % k * d, w))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let cols = Tensor::cat(&taps, 1)?.reshape((b, k * k * c, r * w))?;
            let y = self.matrix.broadcast_matmul(&cols)?;
            bands.push(vemo_kernels::bias_clamp(&y, &self.bias, clamp)?.reshape((b, out, r, w))?);
        }
        Tensor::cat(&bands, 2)
    }
}

impl Module for Conv {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.device().is_cpu() {
            return self.forward_cpu(x);
        }
        let y = x.conv2d(&self.weight, self.padding, 1, self.dilation, 1)?;
        let y = y.broadcast_add(&self.bias.reshape((1, y.dim(1)?, 1, 1))?)?;
        if self.relu { y.relu() } else { Ok(y) }
    }
}

/// One step of a backbone slice.
enum Step {
    Conv(Conv),
    /// 2x2 max-pool, stride 2.
    Pool,
    /// 3x3 max-pool, stride 1, padding 1 (slice 5).
    PoolSame,
}

impl Step {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Step::Conv(conv) => conv.forward(x),
            Step::Pool => x.max_pool2d(2),
            // Replicated edges leave a window's maximum unchanged, like -inf padding.
            Step::PoolSame => x
                .pad_with_same(2, 1, 1)?
                .pad_with_same(3, 1, 1)?
                .max_pool2d_with_stride(3, 1),
        }
    }
}

/// A backbone layer by its torchvision `features` index.
#[derive(Clone, Copy)]
enum Layer {
    Pool,
    /// 3x3 convolution i, batch norm i + 1, ReLU.
    Conv(usize),
    /// 3x3 convolution i and batch norm i + 1, without the ReLU.
    ConvBn(usize),
}

/// easyocr's split of torchvision's `vgg16_bn().features` into `[0:12]`, `[12:19]`,
/// `[19:29]` and `[29:39]`. Slices 2-4 start with the ReLU of the batch norm that ends the
/// slice before; that ReLU is in place, so the decoder sees the outputs of slices 1-3 after
/// it (here it ends those slices) and the output of slice 4 before it (slice 5 starts with a
/// max-pool).
const SLICES: [&[Layer]; 4] = [
    &[
        Layer::Conv(0),
        Layer::Conv(3),
        Layer::Pool,
        Layer::Conv(7),
        Layer::Conv(10),
    ],
    &[Layer::Pool, Layer::Conv(14), Layer::Conv(17)],
    &[
        Layer::Conv(20),
        Layer::Pool,
        Layer::Conv(24),
        Layer::Conv(27),
    ],
    &[
        Layer::Conv(30),
        Layer::Pool,
        Layer::Conv(34),
        Layer::ConvBn(37),
    ],
];

fn vgg_slice(vb: &VarBuilder, layout: &[Layer]) -> candle_core::Result<Vec<Step>> {
    let conv = |i: usize, relu| {
        let (name, bn) = (i.to_string(), (i + 1).to_string());
        Conv::load(vb, &name, Some(&bn), 1, 1, relu).map(Step::Conv)
    };
    layout
        .iter()
        .map(|layer| match *layer {
            Layer::Pool => Ok(Step::Pool),
            Layer::Conv(i) => conv(i, true),
            Layer::ConvBn(i) => conv(i, false),
        })
        .collect()
}

/// `double_conv`: a 1x1 convolution and a 3x3 one, each with batch norm and ReLU.
struct DoubleConv {
    reduce: Conv,
    conv: Conv,
}

impl DoubleConv {
    fn load(vb: &VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            reduce: Conv::load(vb, "conv.0", Some("conv.1"), 0, 1, true)?,
            conv: Conv::load(vb, "conv.3", Some("conv.4"), 1, 1, true)?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.conv.forward(&self.reduce.forward(x)?)
    }
}

/// The CRAFT network in eval mode, with its detection settings.
pub struct Craft {
    slices: Vec<Vec<Step>>,
    upconvs: Vec<DoubleConv>,
    head: Vec<Conv>,
    device: Device,
    config: CraftConfig,
}

impl Craft {
    /// Loads `craft_mlt_25k.safetensors` (the state dict of EasyOCR's `craft_mlt_25k.pth`
    /// without its `module.` prefix) onto `device`, with the default settings.
    pub fn load(weights: &Path, device: &Device) -> crate::Result<Self> {
        let bytes = std::fs::read(weights).map_err(|e| crate::Error::Io {
            path: weights.display().to_string(),
            cause: e,
        })?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, device)?;
        Ok(Self::from_var_builder(&vb, device)?)
    }

    /// Builds the network from a state dict with the reference's names.
    pub fn from_var_builder(vb: &VarBuilder, device: &Device) -> candle_core::Result<Self> {
        let basenet = vb.pp("basenet");
        let mut slices = SLICES
            .iter()
            .enumerate()
            .map(|(i, layout)| vgg_slice(&basenet.pp(format!("slice{}", i + 1)), layout))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let fc = basenet.pp("slice5");
        slices.push(vec![
            Step::PoolSame,
            Step::Conv(Conv::load(&fc, "1", None, 6, 6, false)?),
            Step::Conv(Conv::load(&fc, "2", None, 0, 1, false)?),
        ]);
        let upconvs = (1..=4)
            .map(|i| DoubleConv::load(&vb.pp(format!("upconv{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let cls = vb.pp("conv_cls");
        let head = [
            (0, 1, true),
            (2, 1, true),
            (4, 1, true),
            (6, 0, true),
            (8, 0, false),
        ]
        .into_iter()
        .map(|(i, padding, relu)| Conv::load(&cls, &i.to_string(), None, padding, 1, relu))
        .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            slices,
            upconvs,
            head,
            device: device.clone(),
            config: CraftConfig::default(),
        })
    }

    /// The same network with other detection settings.
    pub fn with_config(self, config: CraftConfig) -> Self {
        Self { config, ..self }
    }

    /// The detection settings in use.
    pub fn config(&self) -> &CraftConfig {
        &self.config
    }

    /// `x`: (batch, 3, H, W) normalised images, H and W multiples of 32. Returns
    /// (batch, 2, H / 2, W / 2): channel 0 the region score, channel 1 the affinity score.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // The decoder's skips, deepest first: slice 5 (fc7), slice 4 ... slice 1.
        let mut sources = Vec::with_capacity(self.slices.len());
        let mut h = x.clone();
        for slice in &self.slices {
            for step in slice {
                h = step.forward(&h)?;
            }
            sources.push(h.clone());
        }
        sources.reverse();
        let mut y = Tensor::cat(&[&sources[0], &sources[1]], 1)?;
        for (i, upconv) in self.upconvs.iter().enumerate() {
            if i > 0 {
                let skip = &sources[i + 1];
                let (_, _, sh, sw) = skip.dims4()?;
                y = Tensor::cat(&[&y.upsample_bilinear2d(sh, sw, false)?, skip], 1)?;
            }
            y = upconv.forward(&y)?;
        }
        for conv in &self.head {
            y = conv.forward(&y)?;
        }
        Ok(y)
    }

    /// The region and affinity maps of `image`, as EasyOCR computes them (resized to the
    /// canvas limit, padded to a multiple of 32, normalised).
    pub fn score_maps(&self, image: &RgbImage) -> crate::Result<ScoreMaps> {
        let canvas = Canvas::new(image, &self.config);
        let x = canvas.tensor(&self.device)?.unsqueeze(0)?;
        let y = self.forward(&x)?;
        Ok(canvas.maps(&y, 0)?)
    }

    /// Text boxes of `image`: quadrilaterals in the image's pixel coordinates.
    pub fn detect(&self, image: &RgbImage) -> crate::Result<Vec<Detection>> {
        Ok(detections(&self.score_maps(image)?, &self.config))
    }

    /// Text boxes of each image, in order. Images whose canvases have the same size share
    /// forward passes (up to [`CraftConfig::batch_pixels`] canvas pixels each).
    pub fn detect_batch(&self, images: &[RgbImage]) -> crate::Result<Vec<Vec<Detection>>> {
        let canvases: Vec<Canvas> = images
            .iter()
            .map(|image| Canvas::new(image, &self.config))
            .collect();
        let mut order: Vec<usize> = (0..images.len()).collect();
        order.sort_by_key(|&i| (canvases[i].height, canvases[i].width));
        let mut out = vec![Vec::new(); images.len()];
        let mut start = 0;
        while start < order.len() {
            let first = &canvases[order[start]];
            let size = (first.height, first.width);
            let per_batch = (self.config.batch_pixels / (size.0 * size.1)).max(1);
            let end = (start..order.len())
                .take(per_batch)
                .take_while(|&j| (canvases[order[j]].height, canvases[order[j]].width) == size)
                .last()
                .map_or(start + 1, |j| j + 1);
            let group = &order[start..end];
            let inputs = group
                .iter()
                .map(|&i| canvases[i].tensor(&self.device))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let y = self.forward(&Tensor::stack(&inputs, 0)?)?;
            for (row, &i) in group.iter().enumerate() {
                out[i] = detections(&canvases[i].maps(&y, row)?, &self.config);
            }
            start = end;
        }
        Ok(out)
    }
}

/// An image resized and padded as `resize_aspect_ratio` does, before normalisation.
struct Canvas {
    /// (3, height, width) pixel values, channel-major, zero beyond the resized image.
    pixels: Vec<f32>,
    height: usize,
    width: usize,
    /// Canvas pixels per original pixel.
    ratio: f64,
}

impl Canvas {
    fn new(image: &RgbImage, config: &CraftConfig) -> Self {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let longest = w.max(h).max(1) as f64;
        let target = (config.mag_ratio * longest).min(config.canvas_size as f64);
        let ratio = target / longest;
        let (tw, th) = (
            ((w as f64 * ratio) as usize).max(1),
            ((h as f64 * ratio) as usize).max(1),
        );
        let resized;
        // An empty image gives a blank 32x32 canvas (and no boxes).
        let source = if (tw, th) == (w, h) || w == 0 || h == 0 {
            image
        } else {
            resized = resize_linear(image, tw, th);
            &resized
        };
        let (height, width) = (
            th.next_multiple_of(CANVAS_MULTIPLE),
            tw.next_multiple_of(CANVAS_MULTIPLE),
        );
        let mut pixels = vec![0f32; 3 * height * width];
        for (x, y, px) in source.enumerate_pixels() {
            for c in 0..3 {
                pixels[(c * height + y as usize) * width + x as usize] = f32::from(px[c]);
            }
        }
        Self {
            pixels,
            height,
            width,
            ratio,
        }
    }

    /// The normalised (3, H, W) input; the zero padding is normalised too, as in EasyOCR.
    fn tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        let plane = self.height * self.width;
        let normalised: Vec<f32> = self
            .pixels
            .iter()
            .enumerate()
            .map(|(i, &v)| (v - MEAN_255[i / plane]) / STD_255[i / plane])
            .collect();
        Tensor::from_vec(normalised, (3, self.height, self.width), device)
    }

    /// Item `row` of the network output `y` (batch, 2, H / 2, W / 2) as score maps.
    fn maps(&self, y: &Tensor, row: usize) -> candle_core::Result<ScoreMaps> {
        let y = y.get(row)?.to_device(&Device::Cpu)?;
        let (height, width) = (y.dim(1)?, y.dim(D::Minus1)?);
        Ok(ScoreMaps {
            region: y.get(0)?.flatten_all()?.to_vec1()?,
            affinity: y.get(1)?.flatten_all()?.to_vec1()?,
            height,
            width,
            scale: 2.0 / self.ratio,
        })
    }
}

/// OpenCV's `resize` with `INTER_LINEAR` on 8-bit images (scalar path): half-pixel centres,
/// 11-bit fixed-point weights, rounding. Used only when the image exceeds the canvas limit or
/// `mag_ratio` is not 1 (OpenCV's SIMD path may differ by one grey level).
pub(crate) fn resize_linear(image: &RgbImage, width: usize, height: usize) -> RgbImage {
    const BITS: u32 = 11;
    let taps = |src: usize, dst: usize| -> Vec<(usize, usize, i32, i32)> {
        let scale = 1.0 / (dst as f64 / src as f64);
        (0..dst)
            .map(|d| {
                let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
                let mut s = f.floor() as i64;
                let mut frac = f - s as f32;
                if s < 0 {
                    (s, frac) = (0, 0.0);
                }
                if s >= src as i64 - 1 {
                    (s, frac) = (src as i64 - 1, 0.0);
                }
                let s = s as usize;
                let w1 = (frac * (1 << BITS) as f32).round() as i32;
                let w0 = ((1.0 - frac) * (1 << BITS) as f32).round() as i32;
                (s, (s + 1).min(src - 1), w0, w1)
            })
            .collect()
    };
    let (sw, sh) = (image.width() as usize, image.height() as usize);
    let (xs, ys) = (taps(sw, width), taps(sh, height));
    let src = image.as_raw();
    // Horizontal pass on every source row the vertical pass needs, kept as fixed point.
    let row = |y: usize| -> Vec<i32> {
        xs.iter()
            .flat_map(|&(x0, x1, w0, w1)| {
                (0..3).map(move |c| {
                    i32::from(src[(y * sw + x0) * 3 + c]) * w0
                        + i32::from(src[(y * sw + x1) * 3 + c]) * w1
                })
            })
            .collect()
    };
    let mut out = Vec::with_capacity(width * height * 3);
    // Neighbouring output rows mostly read the same source rows: keep the last two.
    let mut slots: [(usize, Vec<i32>); 2] = [(usize::MAX, Vec::new()), (usize::MAX, Vec::new())];
    for &(y0, y1, w0, w1) in &ys {
        for y in [y0, y1] {
            if slots.iter().all(|(at, _)| *at != y) {
                let victim = usize::from(slots[0].0 == y0 || slots[0].0 == y1);
                slots[victim] = (y, row(y));
            }
        }
        let source = |y: usize| &slots[usize::from(slots[0].0 != y)].1;
        let (r0, r1) = (source(y0), source(y1));
        out.extend(r0.iter().zip(r1.iter()).map(|(&a, &b)| {
            let v = (i64::from(a) * i64::from(w0)
                + i64::from(b) * i64::from(w1)
                + (1 << (2 * BITS - 1)))
                >> (2 * BITS);
            v.clamp(0, 255) as u8
        }));
    }
    // Infallible: `out` holds exactly width * height * 3 values.
    RgbImage::from_raw(width as u32, height as u32, out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canvas_pads_to_a_multiple_of_32_and_keeps_small_images() {
        let image = RgbImage::from_pixel(100, 50, image::Rgb([10, 20, 30]));
        let canvas = Canvas::new(&image, &CraftConfig::default());
        assert_eq!((canvas.height, canvas.width, canvas.ratio), (64, 128, 1.0));
        assert_eq!(canvas.pixels[0], 10.0);
        assert_eq!(canvas.pixels[64 * 128 + 99], 20.0);
        assert_eq!(canvas.pixels[64 * 128 + 100], 0.0);
    }

    #[test]
    fn an_empty_image_gives_a_blank_canvas() {
        let canvas = Canvas::new(&RgbImage::new(0, 0), &CraftConfig::default());
        assert_eq!((canvas.height, canvas.width), (32, 32));
        assert!(canvas.pixels.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn canvas_shrinks_to_the_limit() {
        let image = RgbImage::from_pixel(400, 100, image::Rgb([200, 200, 200]));
        let config = CraftConfig {
            canvas_size: 200,
            ..CraftConfig::default()
        };
        let canvas = Canvas::new(&image, &config);
        assert_eq!((canvas.height, canvas.width, canvas.ratio), (64, 224, 0.5));
        assert_eq!(canvas.pixels[49 * 224 + 199], 200.0);
        assert_eq!(canvas.pixels[50 * 224 + 199], 0.0);
    }

    #[test]
    fn linear_resize_matches_opencv() {
        // cv2.resize(row, (n, 1), interpolation=cv2.INTER_LINEAR) on 5 -> 3 and 7 -> 10 pixels.
        let cases: [(&[u8], &[u8]); 2] = [
            (&[0, 100, 200, 250, 30], &[33, 200, 103]),
            (
                &[0, 100, 200, 250, 30, 77, 190],
                &[0, 55, 125, 195, 232, 173, 32, 65, 128, 190],
            ),
        ];
        for (row, want) in cases {
            let mut image = RgbImage::new(row.len() as u32, 1);
            for (x, &v) in row.iter().enumerate() {
                image.put_pixel(x as u32, 0, image::Rgb([v, v, v]));
            }
            let out = resize_linear(&image, want.len(), 1);
            let got: Vec<u8> = out.pixels().map(|p| p[0]).collect();
            assert_eq!(got, want);
        }
    }
}
