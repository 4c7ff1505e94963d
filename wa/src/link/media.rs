//! The HTTP client wa-rs uploads and downloads media with.

use async_trait::async_trait;
use wa_rs::transport::UreqHttpClient;
use wa_rs_core::net::{HttpClient, HttpRequest, HttpResponse, StreamingHttpResponse};

/// The stock client, optionally speaking plain HTTP where wa-rs asks for HTTPS. wa-rs builds
/// media URLs as `https://{host}/…` whatever the host (wa-rs 0.2.0 src/upload.rs:41); the
/// simulator's media host is plain HTTP on loopback, so a link pointed at the simulator says so.
/// Never enabled for WhatsApp itself.
pub(crate) struct MediaHttp {
    /// Does the work.
    inner: UreqHttpClient,
    /// Rewrite `https://` to `http://`.
    plain: bool,
}

impl MediaHttp {
    /// A client; `plain` rewrites every `https://` URL to `http://`.
    pub fn new(plain: bool) -> Self {
        MediaHttp {
            inner: UreqHttpClient::new(),
            plain,
        }
    }

    fn rewrite(&self, mut request: HttpRequest) -> HttpRequest {
        if self.plain
            && let Some(rest) = request.url.strip_prefix("https://")
        {
            request.url = format!("http://{rest}");
        }
        request
    }
}

#[async_trait]
impl HttpClient for MediaHttp {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        self.inner.execute(self.rewrite(request)).await
    }

    fn execute_streaming(&self, request: HttpRequest) -> anyhow::Result<StreamingHttpResponse> {
        self.inner.execute_streaming(self.rewrite(request))
    }
}
