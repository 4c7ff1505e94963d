//! Images as wafleet sends them: the longest side at most 1200 px, JPEG at quality 70. Smaller
//! files upload faster from every worker and look the same on a phone. Profile pictures are
//! square, as WhatsApp shows them: the middle of the image, at most 640 px on a side.
//!
//! A small file can claim a huge canvas (a PNG of zeros of 16384×10000 px is under 500 KB and
//! decodes to 500 MB), so an image is measured from its header before anything is decoded and
//! refused over [`MAX_PIXELS`]; the decoder's own limits are a second guard. Decoding is CPU work
//! of up to seconds: [`compress_off_runtime`] does it on the blocking pool, a few at a time, so
//! it never stalls the async runtime that answers every other request.

use std::io::Cursor;
use std::sync::LazyLock;

use image::imageops::FilterType;
use image::{DynamicImage, ImageError, ImageReader, Limits};
use tokio::sync::Semaphore;

/// The longest side of a sent image, in pixels.
pub const MAX_SIDE: u32 = 1200;
/// JPEG quality of a sent image.
pub const JPEG_QUALITY: u8 = 70;
/// The side of a sticker, in pixels (WhatsApp's own size).
pub const STICKER_SIDE: u32 = 512;
/// The side of a profile picture at most, in pixels (WhatsApp's own size).
pub const PROFILE_SIDE: u32 = 640;
/// Most pixels (width × height) an input image may have: a 40-megapixel photo, larger than any
/// phone camera's, and 160 MB once decoded.
pub const MAX_PIXELS: u64 = 40_000_000;
/// Largest width or height accepted as input.
pub const MAX_INPUT_SIDE: u32 = 16_384;
/// Most bytes a decoder may allocate: the pixel budget at 8 bytes a pixel (16-bit RGBA, the
/// widest pixel we read), so any image within the budget fits and nothing much larger does.
const MAX_DECODE_BYTES: u64 = MAX_PIXELS * 8;

/// Decodes running at once in this process: as many as there are CPUs, since each keeps one busy.
static DECODES: LazyLock<Semaphore> = LazyLock::new(|| {
    let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    Semaphore::new(cpus)
});

/// Why an image was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    /// Not an image in a format we read, or damaged.
    #[error("not an image wafleet can read ({0}); send a JPEG, PNG, WebP or GIF file")]
    Unreadable(String),
    /// Too many pixels, or too wide or tall.
    #[error(
        "image is {0}x{1} pixels; the most accepted is 40 megapixels (40,000,000 pixels) and 16384 pixels on a side: send a smaller image"
    )]
    TooLarge(u32, u32),
    /// A video or audio file in a format WhatsApp does not play.
    #[error("{0}")]
    Format(String),
}

fn unreadable(err: ImageError) -> MediaError {
    MediaError::Unreadable(err.to_string())
}

/// A reader of `bytes` with the decoder limits set.
fn reader(bytes: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>, MediaError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| MediaError::Unreadable(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_INPUT_SIDE);
    limits.max_image_height = Some(MAX_INPUT_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    Ok(reader)
}

/// The image's width and height, read from its header alone (cheap: nothing is decoded), or why
/// it is refused: unreadable, or over [`MAX_PIXELS`] or [`MAX_INPUT_SIDE`].
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), MediaError> {
    // Without limits here, so that an oversized image is told apart from a damaged one.
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| MediaError::Unreadable(e.to_string()))?;
    reader.no_limits();
    let (width, height) = reader.into_dimensions().map_err(unreadable)?;
    if u64::from(width) * u64::from(height) > MAX_PIXELS || width.max(height) > MAX_INPUT_SIDE {
        return Err(MediaError::TooLarge(width, height));
    }
    Ok((width, height))
}

/// Decodes `bytes` within the budget ([`dimensions`], then the decoder's limits).
fn decode(bytes: &[u8]) -> Result<DynamicImage, MediaError> {
    let (width, height) = dimensions(bytes)?;
    reader(bytes)?.decode().map_err(|e| match e {
        // The header passed the budget, so only a lying or unusual file gets here.
        ImageError::Limits(_) => MediaError::TooLarge(width, height),
        other => unreadable(other),
    })
}

/// `image` within `side` x `side`, keeping its aspect ratio.
fn fit(image: DynamicImage, side: u32) -> DynamicImage {
    if image.width().max(image.height()) > side {
        image.resize(side, side, FilterType::Triangle)
    } else {
        image
    }
}

/// `image` as a JPEG at [`JPEG_QUALITY`] (which has no alpha channel).
fn jpeg(image: DynamicImage) -> Result<Vec<u8>, MediaError> {
    let rgb = image.into_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
        .encode_image(&rgb)
        .map_err(unreadable)?;
    Ok(out)
}

/// Decodes `bytes` and re-encodes them as a JPEG no larger than [`MAX_SIDE`] on either side.
/// Blocks for as long as decoding takes: from async code, call [`compress_off_runtime`].
pub fn compress(bytes: &[u8]) -> Result<Vec<u8>, MediaError> {
    jpeg(fit(decode(bytes)?, MAX_SIDE))
}

/// Longest side of a picture's thumbnail, in pixels: sharp in a chat bubble on any phone.
pub const THUMBNAIL_SIDE: u32 = 320;

/// Decodes `bytes` and re-encodes them as a JPEG no larger than [`THUMBNAIL_SIDE`] on either
/// side, for the chat viewer. Blocks: from async code, call [`thumbnail_off_runtime`].
pub fn thumbnail(bytes: &[u8]) -> Result<Vec<u8>, MediaError> {
    jpeg(fit(decode(bytes)?, THUMBNAIL_SIDE))
}

/// Decodes `bytes` and re-encodes the largest square in their middle as a JPEG no larger than
/// [`PROFILE_SIDE`] on a side. Blocks: from async code, call [`profile_picture_off_runtime`].
pub fn profile_picture(bytes: &[u8]) -> Result<Vec<u8>, MediaError> {
    let image = decode(bytes)?;
    let side = image.width().min(image.height());
    let square = image.crop_imm((image.width() - side) / 2, (image.height() - side) / 2, side, side);
    jpeg(fit(square, PROFILE_SIDE))
}

/// Decodes `bytes` and re-encodes them as a sticker as WhatsApp shows them: a lossless WebP of
/// [`STICKER_SIDE`] x [`STICKER_SIDE`] pixels, the image fitted in the middle on a transparent
/// background (an animation keeps its first frame). Blocks: from async code, call
/// [`sticker_off_runtime`].
pub fn sticker(bytes: &[u8]) -> Result<Vec<u8>, MediaError> {
    let image = fit(decode(bytes)?, STICKER_SIDE).into_rgba8();
    let mut canvas = image::RgbaImage::new(STICKER_SIDE, STICKER_SIDE);
    let x = (STICKER_SIDE - image.width()) / 2;
    let y = (STICKER_SIDE - image.height()) / 2;
    image::imageops::overlay(&mut canvas, &image, i64::from(x), i64::from(y));
    let mut out = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut out)
        .encode(&canvas, STICKER_SIDE, STICKER_SIDE, image::ExtendedColorType::Rgba8)
        .map_err(unreadable)?;
    Ok(out)
}

/// The MIME type WhatsApp is told for a video, read from the file's first bytes: MP4 (or M4V),
/// which every phone plays. Anything else is refused with what to do.
pub fn video_mime(bytes: &[u8]) -> Result<&'static str, MediaError> {
    match infer::get(bytes).map(|t| t.mime_type()) {
        Some("video/mp4" | "video/x-m4v") => Ok("video/mp4"),
        other => Err(MediaError::Format(format!(
            "not an MP4 video ({}); WhatsApp plays MP4 (H.264 with AAC sound): convert it, or send it as a file",
            other.unwrap_or("unrecognised content")
        ))),
    }
}

/// The MIME type WhatsApp is told for an audio file, read from its first bytes: OGG Opus (as
/// voice notes are), MP3, M4A, AAC or AMR. Anything else is refused with what to do.
pub fn audio_mime(bytes: &[u8]) -> Result<&'static str, MediaError> {
    match infer::get(bytes).map(|t| t.mime_type()) {
        Some("audio/ogg" | "audio/opus") => Ok("audio/ogg; codecs=opus"),
        Some("audio/mpeg") => Ok("audio/mpeg"),
        Some("audio/m4a") => Ok("audio/mp4"),
        Some("audio/aac") => Ok("audio/aac"),
        Some("audio/amr") => Ok("audio/amr"),
        other => Err(MediaError::Format(format!(
            "not an audio file WhatsApp plays ({}); send OGG Opus, MP3, M4A, AAC or AMR, or send it as a file",
            other.unwrap_or("unrecognised content")
        ))),
    }
}

/// The MIME type of a document, from its first bytes when they say (PDF, ZIP, pictures, …).
pub fn sniffed_mime(bytes: &[u8]) -> Option<&'static str> {
    infer::get(bytes).map(|t| t.mime_type())
}

/// [`compress`] for async code: the header is checked here (so an oversized image is refused at
/// once, without waiting for a turn), then the image is decoded on the blocking pool, at most one
/// image per CPU at a time.
#[tracing::instrument(skip_all, fields(bytes = bytes.len()))]
pub async fn compress_off_runtime(bytes: Vec<u8>) -> Result<Vec<u8>, MediaError> {
    in_turn(bytes, compress).await
}

/// [`sticker`] for async code, as [`compress_off_runtime`] runs [`compress`].
#[tracing::instrument(skip_all, fields(bytes = bytes.len()))]
pub async fn sticker_off_runtime(bytes: Vec<u8>) -> Result<Vec<u8>, MediaError> {
    in_turn(bytes, sticker).await
}

/// [`thumbnail`] for async code, as [`compress_off_runtime`] runs [`compress`].
#[tracing::instrument(skip_all, fields(bytes = bytes.len()))]
pub async fn thumbnail_off_runtime(bytes: Vec<u8>) -> Result<Vec<u8>, MediaError> {
    in_turn(bytes, thumbnail).await
}

/// [`profile_picture`] for async code, as [`compress_off_runtime`] runs [`compress`].
#[tracing::instrument(skip_all, fields(bytes = bytes.len()))]
pub async fn profile_picture_off_runtime(bytes: Vec<u8>) -> Result<Vec<u8>, MediaError> {
    in_turn(bytes, profile_picture).await
}

/// Runs `convert` on `bytes` on the blocking pool in turn, counting the outcome.
async fn in_turn(bytes: Vec<u8>, convert: fn(&[u8]) -> Result<Vec<u8>, MediaError>) -> Result<Vec<u8>, MediaError> {
    let result = decode_in_turn(bytes, convert).await;
    let outcome = match &result {
        Ok(_) => "compressed",
        Err(MediaError::TooLarge(..)) => "too_large",
        Err(MediaError::Unreadable(_) | MediaError::Format(_)) => "unreadable",
    };
    metrics::counter!(crate::metrics::IMAGES, "outcome" => outcome).increment(1);
    result
}

async fn decode_in_turn(
    bytes: Vec<u8>,
    convert: fn(&[u8]) -> Result<Vec<u8>, MediaError>,
) -> Result<Vec<u8>, MediaError> {
    dimensions(&bytes)?;
    let permit = DECODES.acquire().await.expect("the decode semaphore is never closed");
    tokio::task::spawn_blocking(move || {
        // Held until the decode ends, even if the request that asked for it has gone.
        let _permit = permit;
        convert(&bytes)
    })
    .await
    .unwrap_or_else(|e| Err(MediaError::Unreadable(format!("the image decoder failed: {e}"))))
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
    fn thumbnails_are_320_px_jpegs_and_small_pictures_keep_their_size() {
        let small = |bytes: &[u8]| image::load_from_memory(&thumbnail(bytes).unwrap()).unwrap();
        assert_eq!(small(&png(1600, 900)).width(), 320);
        assert_eq!(small(&png(1600, 900)).height(), 180);
        assert_eq!(small(&png(900, 1600)).height(), 320);
        assert_eq!((small(&png(96, 60)).width(), small(&png(96, 60)).height()), (96, 60));
        let jpeg = thumbnail(&png(1600, 900)).unwrap();
        assert_eq!(image::guess_format(&jpeg).unwrap(), image::ImageFormat::Jpeg);
        assert!(thumbnail(b"%PDF-1.7 not a picture").is_err());
    }

    #[test]
    fn stickers_are_512_px_webp_with_the_picture_fitted_in_the_middle() {
        let webp = sticker(&png(1000, 500)).unwrap();
        assert_eq!(image::guess_format(&webp).unwrap(), image::ImageFormat::WebP);
        let decoded = image::load_from_memory(&webp).unwrap().into_rgba8();
        assert_eq!(decoded.dimensions(), (512, 512));
        // 512 x 256 in the middle: transparent above and below, opaque across the middle.
        assert_eq!(decoded.get_pixel(256, 10)[3], 0);
        assert_eq!(decoded.get_pixel(256, 256)[3], 255);
        assert_eq!(decoded.get_pixel(256, 500)[3], 0);
    }

    #[test]
    fn videos_and_audio_are_told_apart_from_their_first_bytes() {
        let mp4 = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom";
        assert_eq!(video_mime(mp4), Ok("video/mp4"));
        assert_eq!(audio_mime(b"OggS\0\x02\0\0\0\0"), Ok("audio/ogg; codecs=opus"));
        assert_eq!(audio_mime(b"ID3\x04\0\0\0\0\0\0"), Ok("audio/mpeg"));
        let refused = video_mime(b"%PDF-1.4\n").unwrap_err().to_string();
        assert!(
            refused.contains("application/pdf") && refused.contains("send it as a file"),
            "{refused}"
        );
        assert!(audio_mime(mp4).is_err(), "a video is not sent as audio");
    }

    #[test]
    fn small_images_keep_their_size() {
        let jpeg = compress(&png(640, 480)).unwrap();
        let decoded = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (640, 480));
    }

    #[test]
    fn profile_pictures_are_the_middle_square_at_most_640_px() {
        let decoded = |bytes: Vec<u8>| {
            image::load_from_memory(&profile_picture(&bytes).unwrap())
                .unwrap()
                .to_rgb8()
        };
        let wide = decoded(png(1600, 900));
        assert_eq!(wide.dimensions(), (640, 640));
        // The test image's red channel counts columns and its green rows: the square's first
        // column is the image's 50th, its first row the image's 100th (JPEG is off by a few).
        let landscape = decoded(png(200, 100));
        assert_eq!(landscape.dimensions(), (100, 100));
        assert!(
            (40..=60).contains(&landscape.get_pixel(0, 50).0[0]),
            "{:?}",
            landscape.get_pixel(0, 50)
        );
        let portrait = decoded(png(300, 500));
        assert_eq!(portrait.dimensions(), (300, 300));
        assert!(
            (90..=110).contains(&portrait.get_pixel(150, 0).0[1]),
            "{:?}",
            portrait.get_pixel(150, 0)
        );
        assert!(matches!(profile_picture(b"nope"), Err(MediaError::Unreadable(_))));
        assert!(matches!(
            profile_picture(&zero_png(20_000, 10_000)),
            Err(MediaError::TooLarge(..))
        ));
    }

    /// A decompression bomb: a PNG of zeros whose header claims `width`×`height` grey pixels.
    pub(crate) fn zero_png(width: u32, height: u32) -> Vec<u8> {
        use image::ImageEncoder;
        use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
        let pixels = vec![0u8; width as usize * height as usize];
        let mut out = Vec::new();
        PngEncoder::new_with_quality(&mut out, CompressionType::Best, PngFilter::NoFilter)
            .write_image(&pixels, width, height, image::ExtendedColorType::L8)
            .unwrap();
        out
    }

    #[test]
    fn a_decompression_bomb_is_refused_from_its_header() {
        let bomb = zero_png(16_384, 10_000);
        assert!(bomb.len() < 1024 * 1024, "a small file: {} bytes", bomb.len());
        let started = std::time::Instant::now();
        let err = compress(&bomb).unwrap_err();
        assert_eq!(err, MediaError::TooLarge(16_384, 10_000));
        assert!(err.to_string().contains("40 megapixels"), "{err}");
        // Decoding it would take seconds and half a gigabyte; reading the header takes nothing.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // Wide but within the budget on pixels is refused for its side; within both is accepted.
        assert_eq!(dimensions(&zero_png(20_000, 10)), Err(MediaError::TooLarge(20_000, 10)));
        assert_eq!(dimensions(&zero_png(8_000, 5_000)), Ok((8_000, 5_000)));
    }

    #[test]
    fn decoding_runs_off_the_async_runtime() {
        // One runtime thread: if the decode ran on it, nothing else could run until it ended.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let big = png(4000, 3000);
        runtime.block_on(async {
            let decode = tokio::spawn(async move {
                let jpeg = compress_off_runtime(big).await;
                (jpeg, std::time::Instant::now())
            });
            // Lets the decode start first.
            tokio::task::yield_now().await;
            let ticked = std::time::Instant::now();
            let (jpeg, decoded) = decode.await.unwrap();
            assert!(jpeg.is_ok());
            assert!(
                ticked < decoded,
                "the runtime ran other work while the image was decoded"
            );
        });
    }

    #[tokio::test]
    async fn a_bomb_is_refused_without_waiting_for_a_decode_turn() {
        // Every decode turn taken: a bomb is still refused at once, from its header.
        let cpus = DECODES.available_permits();
        let _all = DECODES.acquire_many(cpus as u32).await.unwrap();
        let refused = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            compress_off_runtime(zero_png(16_384, 10_000)),
        )
        .await
        .expect("refused without a turn");
        assert_eq!(refused, Err(MediaError::TooLarge(16_384, 10_000)));
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
