//! The media store on both of its backings: a directory, and an S3-compatible bucket (a real S3
//! server on loopback). Files are kept, read back byte for byte, replaced, counted and removed
//! alike, pictures with a thumbnail; a bucket's prefix keeps one installation's files apart from
//! another's.

use wafleet_core::media_store::MediaStore;
use wafleet_core::testing::s3::S3Server;
use wafleet_core::types::DeviceId;

/// What every store does with files: kept, read, replaced, counted, removed (twice is fine).
async fn keeps_reads_and_removes(store: &MediaStore) {
    let photo = MediaStore::key_for(DeviceId(7), "3EB0ABCDEF");
    let note = MediaStore::key_for(DeviceId(8), "false_60123@c.us_3EB0 with spaces");
    assert_eq!(store.get(&photo).await.unwrap(), None, "nothing before it is kept");
    store.put(&photo, b"\xff\xd8 a picture".to_vec()).await.unwrap();
    store.put(&note, vec![7; 300_000]).await.unwrap();
    assert_eq!(
        store.get(&photo).await.unwrap().as_deref(),
        Some(&b"\xff\xd8 a picture"[..])
    );
    assert_eq!(store.get(&note).await.unwrap().map(|b| b.len()), Some(300_000));
    store.put(&photo, b"replaced".to_vec()).await.unwrap();
    assert_eq!(store.get(&photo).await.unwrap().as_deref(), Some(&b"replaced"[..]));
    assert_eq!(store.count().await.unwrap(), 2);
    store.delete(&photo).await.unwrap();
    store.delete(&photo).await.unwrap();
    assert_eq!(store.get(&photo).await.unwrap(), None);
    assert_eq!(store.count().await.unwrap(), 1);
}

/// A picture is kept with a thumbnail beside it (not counted, removed with it); other files,
/// and stickers, without.
async fn pictures_get_thumbnails(store: &MediaStore) {
    let mut big = Vec::new();
    image::RgbImage::from_fn(1280, 960, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]))
        .write_to(&mut std::io::Cursor::new(&mut big), image::ImageFormat::Jpeg)
        .unwrap();
    let photo = MediaStore::key_for(DeviceId(3), "PHOTO");
    let pdf = MediaStore::key_for(DeviceId(3), "PDF");
    let sticker = MediaStore::key_for(DeviceId(3), "STICKER");
    store.keep(&photo, big.clone(), "image/jpeg").await.unwrap();
    store.keep(&pdf, b"%PDF-1.7".to_vec(), "application/pdf").await.unwrap();
    store.keep(&sticker, big.clone(), "image/webp").await.unwrap();
    assert_eq!(
        store.get(&photo).await.unwrap().as_deref(),
        Some(&big[..]),
        "the picture as sent"
    );
    let thumbnail = store.thumbnail(&photo).await.unwrap().expect("a thumbnail");
    let decoded = image::load_from_memory(&thumbnail).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (320, 240));
    assert_eq!(store.thumbnail(&pdf).await.unwrap(), None);
    assert_eq!(store.thumbnail(&sticker).await.unwrap(), None);
    assert_eq!(store.count().await.unwrap(), 3, "thumbnails are not counted as files");
    store.delete(&photo).await.unwrap();
    assert_eq!(store.thumbnail(&photo).await.unwrap(), None, "removed with its picture");
}

#[tokio::test]
async fn a_directory_keeps_files() {
    let dir = tempfile::tempdir().unwrap();
    keeps_reads_and_removes(&MediaStore::in_dir(dir.path()).unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    pictures_get_thumbnails(&MediaStore::in_dir(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn a_bucket_keeps_files_under_its_prefix() {
    let s3 = S3Server::start().await;
    s3.create_bucket("media").await;
    let options = || s3.options().into_iter().map(|(k, v)| (k, v.expose().to_owned()));
    let fleet = MediaStore::in_bucket("s3://media/fleet-a", options()).unwrap();
    keeps_reads_and_removes(&fleet).await;
    let other = MediaStore::in_bucket("s3://media/fleet-b", options()).unwrap();
    assert_eq!(other.count().await.unwrap(), 0, "another prefix sees none of them");
    let whole = MediaStore::in_bucket("s3://media", options()).unwrap();
    assert_eq!(whole.count().await.unwrap(), 1, "kept under the prefix");
    pictures_get_thumbnails(&MediaStore::in_bucket("s3://media/pictures", options()).unwrap()).await;
}

#[tokio::test]
async fn a_bucket_that_is_not_there_is_an_error_not_a_missing_file() {
    let s3 = S3Server::start().await;
    let options = s3.options().into_iter().map(|(k, v)| (k, v.expose().to_owned()));
    let store = MediaStore::in_bucket("s3://no-such-bucket", options).unwrap();
    let key = MediaStore::key_for(DeviceId(1), "3EB0");
    assert!(store.put(&key, b"x".to_vec()).await.is_err());
}

#[test]
fn urls_other_than_a_bucket_are_refused() {
    for url in ["/var/lib/wafleet/media", "ftp://host/bucket", "file:///tmp/media"] {
        let refused = MediaStore::in_bucket(url, std::iter::empty()).unwrap_err();
        assert!(format!("{refused:#}").contains("MEDIA_URL"), "{url}: {refused:#}");
    }
}
