//! Arguments, as clap parses them. Resolved into typed requests by the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::plan::{Strategy, render::PlanFormat};

#[derive(Debug, Parser)]
#[command(
    name = "kprov",
    version,
    about = "Provision end-to-end test environments on Kind, fast, and see where the setup time went",
    long_about = None,
    after_help = "Examples:\n  kprov up --service aianalysis --coverage --source ../kubernaut\n  kprov profile latest --format svg > setup.svg\n  kprov plan --service demo --format mermaid\n  kprov down --service aianalysis"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Where the profiles' paths (contexts, manifests, CRDs) resolve.
    #[arg(
        long,
        global = true,
        default_value = ".",
        env = "KPROV_SOURCE",
        value_name = "DIR"
    )]
    pub source: PathBuf,
    /// Where the service profiles are (`<dir>/<service>.yaml`).
    #[arg(
        long,
        global = true,
        default_value = "profiles",
        env = "KPROV_PROFILES",
        value_name = "DIR"
    )]
    pub profiles: PathBuf,
    /// Where kprov keeps its state: run records (runs/), task logs and diagnostics (logs/),
    /// coverage data (coverdata/). Cluster locks are host-wide, not here.
    #[arg(
        long,
        global = true,
        default_value = ".kprov",
        env = "KPROV_STATE",
        value_name = "DIR"
    )]
    pub state: PathBuf,
    /// More logs (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build, create or reuse the cluster, load, deploy, and wait until everything is ready.
    #[command(
        after_help = "Examples:\n  kprov up --service aianalysis --coverage\n  kprov up --service demo --reuse --trace trace.json\n  kprov up --service gateway --strategy hybrid --jobs 4 --json"
    )]
    Up(UpArgs),
    /// Delete the service's cluster (only clusters of that name; the kind CLI when present).
    #[command(
        after_help = "Examples:\n  kprov down --service aianalysis\n  kprov down --cluster aianalysis-e2e"
    )]
    Down(DownArgs),
    /// Show the task graph a run would execute, with estimates and the critical path.
    #[command(
        after_help = "Examples:\n  kprov plan --service aianalysis\n  kprov plan --service demo --strategy hybrid --format json\n  kprov plan --service demo --format dot | dot -Tsvg > plan.svg"
    )]
    Plan(PlanArgs),
    /// Check profiles and the files they name; exit 2 with every error listed.
    #[command(
        after_help = "Examples:\n  kprov validate\n  kprov validate --service aianalysis --source ../kubernaut"
    )]
    Validate(ValidateArgs),
    /// Print every object `up` would apply, in apply order; run-time values as placeholders.
    #[command(
        after_help = "Examples:\n  kprov render --service demo\n  kprov render --service aianalysis --source ../kubernaut --format json\n  kprov render --service demo | kubectl apply --dry-run=server -f -"
    )]
    Render(RenderArgs),
    /// List the service profiles found.
    #[command(after_help = "Example:\n  kprov services --profiles profiles")]
    Services,
    /// Where did the setup time go? Reports over run records.
    #[command(
        after_help = "Examples:\n  kprov profile\n  kprov profile latest --format svg > waterfall.svg\n  kprov profile --format trace > trace.json   # open in ui.perfetto.dev\n  kprov profile RUN --compare OTHER\n  kprov profile --what-if hybrid --jobs 2\n  kprov profile --merge records/ --format markdown   # a CI matrix's runs"
    )]
    Profile(ProfileArgs),
    /// The service's cluster, nodes, and what is deployed and ready.
    #[command(after_help = "Example:\n  kprov status --service demo")]
    Status(ServiceArg),
    /// Collect coverage from the instrumented Deployments (scale to zero, copy /coverdata out).
    #[command(after_help = "Example:\n  kprov coverage --service signalprocessing --out coverdata")]
    Coverage(CoverageArgs),
    /// The image cache (`--image-cache DIR`): list its archives, evict old ones.
    #[command(
        after_help = "Examples:\n  kprov cache ls --image-cache ~/.cache/kprov-images\n  kprov cache prune --image-cache ~/.cache/kprov-images --max-size 5GiB\n  KPROV_IMAGE_CACHE=/ci/images kprov cache prune --older-than 7d\n  kprov cache key --service aianalysis --coverage --source ../kubernaut"
    )]
    Cache(CacheArgs),
    /// Print a shell completion script.
    #[command(after_help = "Example:\n  kprov completions bash > /etc/bash_completion.d/kprov")]
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Args)]
pub struct ServiceArg {
    /// The service profile to use (see `kprov services`).
    #[arg(long, short)]
    pub service: String,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub service: ServiceArg,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// Build instrumented images and mount a coverdata directory into the nodes.
    #[arg(long)]
    pub coverage: bool,
    /// Use the service's cluster if it exists, instead of refusing.
    #[arg(long)]
    pub reuse: bool,
    /// Rebuild images even when their inputs did not change.
    #[arg(long)]
    pub no_cache: bool,
    /// After a failure, go on with everything that does not depend on it.
    #[arg(long)]
    pub keep_going: bool,
    /// Keep a cluster this run created when the run fails (default: delete it).
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Give up after this long (e.g. 15m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Also write a Chrome trace (Perfetto) of this run.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Write the run-time values the profile marks `export: true` to FILE as one JSON object
    /// (name → value; mode 0600), once the run succeeded. FILE is removed when the run starts:
    /// after a failed run there is none.
    #[arg(long, value_name = "FILE", env = "KPROV_EXPORT_VALUES")]
    pub export_values: Option<PathBuf>,
    /// Print events as JSON lines instead of the console view.
    #[arg(long)]
    pub json: bool,
    /// Use an existing cluster from this kubeconfig instead of creating one.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context of an existing cluster.
    #[arg(long)]
    pub context: Option<String>,
    #[command(flatten)]
    pub images: ImageArgs,
    #[command(flatten)]
    pub image_cache: ImageCacheArgs,
}

/// `--image-cache`: built images kept between runs (and machines) as archives.
#[derive(Debug, Args, Default)]
pub struct ImageCacheArgs {
    /// Keep built images in DIR, one `docker save` archive per content hash of the build
    /// inputs, and load an image from there instead of building it when the engine lacks it
    /// (outcome `restored`). For CI runners that start empty: save and restore DIR with your
    /// CI's cache.
    #[arg(long, value_name = "DIR", env = "KPROV_IMAGE_CACHE")]
    pub image_cache: Option<PathBuf>,
    /// The image cache's size cap, applied after each save: least recently used archives are
    /// evicted first (10GiB, 500MiB; 10G is decimal).
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "10GiB",
        env = "KPROV_IMAGE_CACHE_MAX_SIZE",
        value_parser = crate::tasks::image_cache::parse_size
    )]
    pub image_cache_max_size: u64,
}

#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the archives: inputs hash, image, size, last used (most recent first).
    Ls(CacheDirArg),
    /// Evict archives, least recently used first; archives another run is reading stay.
    Prune(PruneArgs),
    /// Print one hash of every build's inputs, as kprov keys its archives: a CI cache key that
    /// changes exactly when some image would be built again (needs the engine: base image IDs
    /// are inputs). Each image's own hash goes to stderr.
    Key(CacheKeyArgs),
}

#[derive(Debug, Args)]
pub struct CacheKeyArgs {
    #[command(flatten)]
    pub service: ServiceArg,
    /// The inputs of a `--coverage` run (its builds carry the coverage args).
    #[arg(long)]
    pub coverage: bool,
}

#[derive(Debug, Args)]
pub struct CacheDirArg {
    /// The image cache directory.
    #[arg(long, value_name = "DIR", env = "KPROV_IMAGE_CACHE")]
    pub image_cache: PathBuf,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub dir: CacheDirArg,
    /// Evict until the rest fit in SIZE (default, without --older-than: 10GiB).
    #[arg(
        long,
        value_name = "SIZE",
        env = "KPROV_IMAGE_CACHE_MAX_SIZE",
        value_parser = crate::tasks::image_cache::parse_size
    )]
    pub max_size: Option<u64>,
    /// Evict archives not used for this long (7d, 12h).
    #[arg(long, value_name = "AGE", value_parser = humantime::parse_duration)]
    pub older_than: Option<std::time::Duration>,
}

/// Where images come from instead of the profile's builds (kubernaut's CI modes).
#[derive(Debug, Args, Default)]
pub struct ImageArgs {
    /// Use KEY's image already in the engine instead of building it (repeatable): KEY=REF.
    #[arg(long = "image", value_name = "KEY=REF", value_parser = crate::profile::sources::parse_local)]
    pub local: Vec<(String, String)>,
    /// Build nothing: reference every built image as REGISTRY/<name>:TAG, where <name> is the
    /// last part of its repository (kubernaut's IMAGE_REGISTRY).
    #[arg(long, value_name = "REGISTRY", requires = "image_tag")]
    pub image_registry: Option<String>,
    /// The tag of every image in --image-registry (kubernaut's IMAGE_TAG).
    #[arg(long, value_name = "TAG", requires = "image_registry")]
    pub image_tag: Option<String>,
    /// Who pulls registry images: kprov (once, then streamed into every node, as for built
    /// images) or the nodes (manifests get imagePullPolicy: IfNotPresent).
    #[arg(long, value_enum, default_value_t = RegistryPull::Kprov, requires = "image_registry")]
    pub registry_pull: RegistryPull,
}

/// Who pulls the images of `--image-registry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RegistryPull {
    /// kprov pulls each image once and streams it into the nodes (private registries work).
    #[default]
    Kprov,
    /// The nodes pull (their containerd must reach the registry).
    Nodes,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    #[arg(long, short, required_unless_present = "cluster")]
    pub service: Option<String>,
    /// A cluster name, instead of the service's.
    #[arg(long, conflicts_with = "service")]
    pub cluster: Option<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub service: ServiceArg,
    #[command(flatten)]
    pub images: ImageArgs,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
}

/// How a run is scheduled (and so how a plan is estimated).
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    #[arg(long, value_enum, default_value_t = Strategy::Dag)]
    pub strategy: Strategy,
    /// Tasks running at once, all kinds together; 0: no limit (default: 2 × CPUs, at least
    /// 8). `--strategy sequential` runs one at a time whatever this says.
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Image builds running at once, within --jobs; 0: only --jobs limits them (default:
    /// CPUs). Loads, pulls and the cluster's creation share 4 slots (fixed).
    #[arg(long, value_name = "N")]
    pub build_jobs: Option<usize>,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub service: ServiceArg,
    #[command(flatten)]
    pub images: ImageArgs,
    #[arg(long, value_enum, default_value_t = RenderFormat::Yaml)]
    pub format: RenderFormat,
}

/// How `kprov render` writes objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RenderFormat {
    /// YAML documents, each headed by a comment naming its task and origin.
    Yaml,
    /// One JSON array of {task, origin, object}.
    Json,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Only this service (default: every profile).
    #[arg(long, short)]
    pub service: Option<String>,
}

#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// A run id, a prefix of one, a run record file, or `latest`.
    #[arg(default_value = "latest")]
    pub run: String,
    /// text, json, markdown, trace (Chrome/Perfetto) or svg.
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Compare with another run (deltas are RUN − OTHER).
    #[arg(long, value_name = "OTHER")]
    pub compare: Option<String>,
    /// Replay the recorded durations under another strategy.
    #[arg(long, value_enum, value_name = "STRATEGY")]
    pub what_if: Option<Strategy>,
    /// With --what-if: the jobs limit to replay with (default: the run's).
    #[arg(long, short, requires = "what_if")]
    pub jobs: Option<usize>,
    /// Only runs of this service (for `latest`).
    #[arg(long, short)]
    pub service: Option<String>,
    /// One report over many runs (the jobs of a CI matrix): record files, or directories
    /// searched for `*.json` records (other JSON there is skipped with a warning). Text, json,
    /// markdown, or trace (a process per run).
    #[arg(
        long,
        value_name = "PATH",
        num_args = 1..,
        conflicts_with_all = ["run", "compare", "what_if", "service"]
    )]
    pub merge: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CoverageArgs {
    #[command(flatten)]
    pub service: ServiceArg,
    /// Where to put the coverage data (default: coverdata/<service>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}
