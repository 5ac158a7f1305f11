//! Image pulls on Docker: progress read off the engine's stream, registry
//! credentials passed in the `X-Registry-Auth` header in the encoding the
//! engine decodes.

use bollard::BollardRequest;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::StreamExt;

use crate::{Error, RegistryAuth};

/// The headers in which Docker takes registry credentials, as base64url
/// JSON: one registry's (pulls, pushes), and several registries' (builds).
const REGISTRY_HEADERS: [&str; 2] = ["x-registry-auth", "x-registry-config"];

/// The layers of an image being pulled, from Docker's progress messages.
#[derive(Debug, Default)]
struct Layers {
    all: std::collections::HashSet<String>,
    done: std::collections::HashSet<String>,
}

/// Pulls `image` with `auth` when given; the error is the engine's message,
/// which for a registry's refusal is the registry's.
pub(super) async fn pull(
    docker: &bollard::Docker,
    image: &str,
    auth: Option<&RegistryAuth>,
) -> Result<(), Error> {
    let (name, tag) = split_tag(image);
    let options = CreateImageOptionsBuilder::default()
        .from_image(name)
        .tag(tag)
        .build();
    let credentials = auth.map(|auth| DockerCredentials {
        username: Some(auth.username.clone()),
        password: Some(auth.password.clone()),
        ..Default::default()
    });
    let mut progress = docker.create_image(Some(options), None, credentials);
    let mut layers = Layers::default();
    while let Some(item) = progress.next().await {
        match item {
            Ok(info) => {
                if layers.update(&info) {
                    tracing::debug!(
                        image,
                        layers_done = layers.done.len(),
                        layers_total = layers.all.len(),
                        "pulling"
                    );
                }
            }
            Err(BollardError::DockerResponseServerError { message, .. }) => {
                return Err(Error::Pull(message));
            }
            Err(BollardError::DockerStreamError { error }) => return Err(Error::Pull(error)),
            Err(err) => return Err(Error::Pull(err.to_string())),
        }
    }
    Ok(())
}

/// Puts the registry credential headers of `request` in base64url, the
/// alphabet Docker decodes them with (Go's `base64.URLEncoding`, as the
/// docker CLI encodes them). bollard 0.21 encodes them with the standard
/// alphabet (its `auth::base64_url_encode` uses `STANDARD`), and Docker
/// does not reject a pull whose header it cannot decode: it pulls
/// anonymously, so credentials whose JSON happens to encode to a `+` or a
/// `/` failed with the registry's "unauthorized". The two alphabets differ
/// in those two characters only and pad alike, so swapping them is the
/// whole conversion, and a header already in base64url stays as it is (a
/// bollard that fixes its encoding needs nothing from here).
pub(super) fn url_safe_registry_headers(mut request: BollardRequest) -> BollardRequest {
    for name in REGISTRY_HEADERS {
        let Some(text) = request.headers().get(name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        if !text.contains(['+', '/']) {
            continue;
        }
        let url_safe: String = text
            .chars()
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            })
            .collect();
        // Always valid: the same ASCII as a valid value, two characters swapped.
        if let Ok(value) = http::HeaderValue::from_str(&url_safe) {
            request.headers_mut().insert(name, value);
        }
    }
    request
}

// === impl Layers ===

impl Layers {
    /// Takes one progress message in; true when a layer appeared or finished.
    fn update(&mut self, info: &bollard::models::CreateImageInfo) -> bool {
        // Messages without an id, or whose id is the tag, are about the image.
        let (Some(id), Some(status)) = (info.id.as_deref(), info.status.as_deref()) else {
            return false;
        };
        let layer = [
            "Pulling fs layer",
            "Waiting",
            "Downloading",
            "Verifying Checksum",
            "Download complete",
            "Extracting",
        ];
        let finished = ["Pull complete", "Already exists"];
        if finished.contains(&status) {
            self.all.insert(id.to_owned());
            self.done.insert(id.to_owned())
        } else if layer.contains(&status) {
            self.all.insert(id.to_owned())
        } else {
            false
        }
    }
}

/// `name:tag` from an image reference (`latest` when untagged; a registry
/// port is not a tag).
fn split_tag(image: &str) -> (&str, &str) {
    let image = image.split('@').next().unwrap_or(image);
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    use super::*;

    /// Made to encode to both `+` and `/` in standard base64 (checked below).
    const PASSWORD: &str = "p+a/ss??>>~~";

    #[test]
    fn counts_pulled_layers() {
        let message = |id: &str, status: &str| bollard::models::CreateImageInfo {
            id: Some(id.into()),
            status: Some(status.into()),
            ..Default::default()
        };
        let mut layers = Layers::default();
        assert!(!layers.update(&message("0.1", "Pulling from echo")));
        assert!(layers.update(&message("a", "Pulling fs layer")));
        assert!(layers.update(&message("b", "Already exists")));
        assert!(!layers.update(&message("a", "Downloading")));
        assert_eq!((layers.done.len(), layers.all.len()), (1, 2));
        assert!(layers.update(&message("a", "Pull complete")));
        assert_eq!((layers.done.len(), layers.all.len()), (2, 2));
    }

    #[test]
    fn splits_tags() {
        assert_eq!(split_tag("moor/pause:0.1"), ("moor/pause", "0.1"));
        assert_eq!(
            split_tag("localhost:5000/echo"),
            ("localhost:5000/echo", "latest")
        );
        assert_eq!(split_tag("echo"), ("echo", "latest"));
    }

    /// The `X-Registry-Auth` header of the pull bollard sends, through
    /// `modifier` when given (the request goes nowhere: the transport
    /// keeps the header and fails).
    async fn sent_header(
        modifier: Option<fn(BollardRequest) -> BollardRequest>,
        auth: &RegistryAuth,
    ) -> String {
        let (sent, received) = mpsc::channel();
        let transport = move |request: BollardRequest| {
            let header = request
                .headers()
                .get("X-Registry-Auth")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let _ = sent.send(header);
            std::future::ready(Err(BollardError::RequestTimeoutError))
        };
        let mut docker = bollard::Docker::connect_with_custom_transport(
            transport,
            Some("http://docker.invalid"),
            5,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap();
        if let Some(modifier) = modifier {
            docker = docker.with_request_modifier(modifier);
        }
        let result = pull(&docker, "127.0.0.1:5000/private:1", Some(auth)).await;
        assert!(result.is_err(), "the transport fails every request");
        received
            .try_recv()
            .expect("a request was sent")
            .expect("with an X-Registry-Auth header")
    }

    fn auth() -> RegistryAuth {
        RegistryAuth {
            username: "moor".into(),
            password: PASSWORD.into(),
        }
    }

    #[tokio::test]
    async fn credentials_reach_docker_in_base64url() {
        let header = sent_header(Some(url_safe_registry_headers), &auth()).await;
        assert!(!header.contains(['+', '/']), "base64url only: {header}");
        let json = URL_SAFE.decode(&header).expect("Docker can decode it");
        let sent: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(sent["username"], "moor");
        assert_eq!(sent["password"], PASSWORD);
        // The same JSON in the standard alphabet has both characters Docker
        // cannot decode: the case this is about.
        let standard = STANDARD.encode(&json);
        assert!(
            standard.contains('+') && standard.contains('/'),
            "{standard}"
        );
    }

    /// Says when the workaround above is no longer needed: a bollard that
    /// encodes in base64url fails this test.
    #[tokio::test]
    async fn bollard_alone_encodes_in_the_standard_alphabet() {
        let header = sent_header(None, &auth()).await;
        assert!(header.contains(['+', '/']), "{header}");
        assert!(STANDARD.decode(&header).is_ok());
        assert!(URL_SAFE.decode(&header).is_err());
    }

    #[test]
    fn a_base64url_header_is_left_as_it_is() {
        let value = URL_SAFE.encode(r#"{"username":"moor","password":"p+a/ss??>>~~"}"#);
        assert!(value.contains(['-', '_']), "{value}");
        let request = http::Request::builder()
            .header("X-Registry-Auth", value.as_str())
            .body(bollard::body_full(bytes::Bytes::new()))
            .unwrap();
        let request = url_safe_registry_headers(request);
        assert_eq!(request.headers()["x-registry-auth"], value.as_str());
    }
}
