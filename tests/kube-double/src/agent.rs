//! The node agent: the kubelet's image work on a worker node of a sandbox. The double runs in
//! the control-plane node and can reach only that node's containerd; on every other node
//! `kube-double --node-agent` serves that node's image list and pulls on the `kind` network
//! (port [`PORT`], plain HTTP: test infrastructure, not the kubelet's API), so pods bound to
//! a worker wait for, and pull into, that worker's own containerd.
//!
//! - `GET /images` → `{"images": {ref: digest}}`, or 500 `{"error": …}`
//! - `POST /pull` with `{"image": ref}` → `{"digest": …}`, or 502 `{"error": …}`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::images::{self, NodeImages, Tools};

pub const PORT: u16 = 10250;
/// A pull of a large image may take a while; a list must not.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);
const PULL_TIMEOUT: Duration = Duration::from_secs(600);

/// Serves this node's images until the process ends.
pub async fn serve(listen: SocketAddr, tools: Tools) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("listen on {listen}: {e}"))?;
    eprintln!("kube-double: node agent serving this node's images on http://{listen}");
    let tools = Arc::new(tools);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("kube-double: node agent: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let tools = tools.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(tools.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn answer(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

async fn handle(
    tools: Arc<Tools>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    Ok(match (parts.method, parts.uri.path()) {
        (Method::GET, "/images") => match images::list(&tools).await {
            Ok(list) => answer(StatusCode::OK, json!({"images": list})),
            Err(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": e})),
        },
        (Method::POST, "/pull") => {
            let body = body.collect().await.map(|b| b.to_bytes());
            let image = body
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v["image"].as_str().map(str::to_string));
            match image {
                None => answer(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "expected {\"image\": REF}"}),
                ),
                Some(image) => match images::pull(&tools, &image).await {
                    Ok(digest) => answer(StatusCode::OK, json!({"digest": digest})),
                    Err(e) => answer(StatusCode::BAD_GATEWAY, json!({"error": e})),
                },
            }
        }
        _ => answer(StatusCode::NOT_FOUND, json!({"error": "no such path"})),
    })
}

/// One request to the agent of `node`; the JSON it answered, whatever its status.
async fn call(
    node: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let tcp = tokio::net::TcpStream::connect((node, PORT))
        .await
        .map_err(|e| format!("reach the node agent of {node} on port {PORT}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("talk to the node agent of {node}: {e}"))?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", node)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("ask the node agent of {node}: {e}"))?;
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("read the node agent of {node}: {e}"))?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("the node agent of {node} answered something not JSON: {e}"))
}

/// The images of `node`, through its agent.
pub async fn list(node: &str) -> NodeImages {
    let v = tokio::time::timeout(LIST_TIMEOUT, call(node, Method::GET, "/images", None))
        .await
        .map_err(|_| format!("the node agent of {node} did not answer within 10s"))??;
    if let Some(e) = v["error"].as_str() {
        return Err(e.to_string());
    }
    Ok(v["images"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, d)| d.as_str().map(|d| (k.clone(), d.to_string())))
        .collect())
}

/// Pulls `image` into `node`'s containerd, through its agent.
pub async fn pull(node: &str, image: &str) -> Result<String, String> {
    let body = json!({"image": image});
    let v = tokio::time::timeout(PULL_TIMEOUT, call(node, Method::POST, "/pull", Some(body)))
        .await
        .map_err(|_| format!("failed to pull and unpack image \"{image}\": timed out"))??;
    match (v["digest"].as_str(), v["error"].as_str()) {
        (Some(d), _) => Ok(d.to_string()),
        (_, Some(e)) => Err(e.to_string()),
        _ => Err(format!("the node agent of {node} answered {v}")),
    }
}
