//! Images as wafleet sends them: the longest side at most 1200 px, JPEG at quality 70. Smaller
//! files upload faster from every worker and look the same on a phone.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{ImageReader, Limits};

/// The longest side of a sent image, in pixels.
pub const MAX_SIDE: u32 = 1200;
/// JPEG quality of a sent image.
pub const JPEG_QUALITY: u8 = 70;
/// Largest width or height accepted as input; beyond it a file is more likely a decompression
/// bomb than a photo.
const MAX_INPUT_SIDE: u32 = 16_384;

/// Why an image was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    /// Not an image in a format we read, or damaged.
    #[error("not an image wafleet can read ({0}); send a JPEG, PNG, WebP or GIF file")]
    Unreadable(String),
    /// Too many pixels.
    #[error("image is {0}x{1} pixels; the most accepted is 16384 on a side")]
    TooLarge(u32, u32),
}

/// Decodes `bytes` and re-encodes them as a JPEG no larger than [`MAX_SIDE`] on either side.
pub fn compress(bytes: &[u8]) -> Result<Vec<u8>, MediaError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| MediaError::Unreadable(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_INPUT_SIDE);
    limits.max_image_height = Some(MAX_INPUT_SIDE);
    reader.limits(limits);
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| MediaError::Unreadable(e.to_string()))?;
    if width > MAX_INPUT_SIDE || height > MAX_INPUT_SIDE {
        return Err(MediaError::TooLarge(width, height));
    }
    let image = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| MediaError::Unreadable(e.to_string()))?
        .decode()
        .map_err(|e| MediaError::Unreadable(e.to_string()))?;
    let image = if image.width().max(image.height()) > MAX_SIDE {
        // Fits within MAX_SIDE x MAX_SIDE, keeping the aspect ratio.
        image.resize(MAX_SIDE, MAX_SIDE, FilterType::Triangle)
    } else {
        image
    };
    // JPEG has no alpha channel.
    let rgb = image.into_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
        .encode_image(&rgb)
        .map_err(|e| MediaError::Unreadable(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbaImage::from_fn(width, height, |x, y| {
            image::Rgba([(x % 256) as u8, (y % 256) as u8, 128, 255])
        });
        let mut out = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn large_images_shrink_to_1200_on_the_longest_side_as_jpeg() {
        let jpeg = compress(&png(3000, 1500)).unwrap();
        let decoded = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (1200, 600));
        assert_eq!(image::guess_format(&jpeg).unwrap(), image::ImageFormat::Jpeg);
    }

    #[test]
    fn small_images_keep_their_size() {
        let jpeg = compress(&png(640, 480)).unwrap();
        let decoded = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (640, 480));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let err = compress(b"definitely not an image").unwrap_err();
        assert!(err.to_string().contains("JPEG, PNG"), "{err}");
        let mut truncated = png(100, 100);
        truncated.truncate(60);
        assert!(compress(&truncated).is_err());
    }
}
