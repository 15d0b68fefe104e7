//! `kprov render`: every object `kprov up` would apply, in apply order, for review, diffs and
//! `kubectl apply --dry-run=server -f -`.

use super::args::{Global, RenderArgs, RenderFormat};
use super::commands::{load_for_run, print};
use super::exit;
use super::out::say;
use crate::provision::render;
use crate::record::store::StateDir;
use crate::tasks::remote;
use tokio_util::sync::CancellationToken;

pub async fn render_cmd(g: &Global, a: &RenderArgs) -> i32 {
    let profile = match load_for_run(g, &a.service.service, &a.images, false) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let tools = remote::Tools::find();
    let cancel = CancellationToken::new();
    let progress = |line: String| tracing::info!("{line}");
    let cache_dir = StateDir::new(&g.state).root().join("cache");
    let fetch = render::Fetch {
        cache_dir: &cache_dir,
        tools: &tools,
        cancel: &cancel,
        progress: &progress,
    };
    // Host files are never read for a render (their keys are placeholders): what this host
    // would leave out is said apart.
    for note in crate::profile::secrets::notes(&profile, &g.source) {
        say!("note: {note}");
    }
    let rendered = match render::render_profile(&profile, &g.source, &fetch).await {
        Ok(r) => r,
        Err(e) => {
            say!("error: failed to render {}: {e}", profile.path.display());
            return exit::USAGE;
        }
    };
    let text = match a.format {
        RenderFormat::Yaml => match render::to_yaml(&rendered) {
            Ok(t) => t,
            Err(e) => {
                say!("error: failed to write YAML: {e}");
                return exit::FAILURE;
            }
        },
        RenderFormat::Json => {
            let mut t = serde_json::to_string_pretty(&render::to_json(&rendered))
                .expect("JSON values serialise");
            t.push('\n');
            t
        }
    };
    print(&text, exit::SUCCESS)
}
