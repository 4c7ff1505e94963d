//! The HTTP client the WhatsApp client uploads and downloads media with (and, unless a version is
//! configured, fetches the current WhatsApp Web version with).

use async_trait::async_trait;
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse, UreqHttpClient};
use whatsapp_rust::wacore::net::{StreamingHttpResponse, UploadBody};

/// The stock client, optionally speaking plain HTTP where the client asks for HTTPS. The client
/// builds media URLs as `https://{host}/…` whatever the host; the simulator's media host is plain
/// HTTP on loopback, so a link pointed at the simulator says so. Never enabled for WhatsApp itself.
/// Every method is forwarded: the trait's defaults would silently turn streaming off.
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

    fn supports_streaming(&self) -> bool {
        self.inner.supports_streaming()
    }

    fn execute_streaming(&self, request: HttpRequest) -> anyhow::Result<StreamingHttpResponse> {
        self.inner.execute_streaming(self.rewrite(request))
    }

    fn supports_upload_streaming(&self) -> bool {
        self.inner.supports_upload_streaming()
    }

    fn execute_upload(
        &self,
        request: HttpRequest,
        body: UploadBody,
        content_length: u64,
    ) -> anyhow::Result<HttpResponse> {
        self.inner.execute_upload(self.rewrite(request), body, content_length)
    }

    fn resource_report(&self) -> Option<whatsapp_rust::wacore::stats::HttpResourceReport> {
        self.inner.resource_report()
    }
}
