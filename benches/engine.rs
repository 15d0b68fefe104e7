//! Engine overhead and schedule quality, printed as figures: `cargo bench --bench engine`.
//!
//! - The real engine runs a random DAG of 10,000 zero-work tasks (about 3 dependencies each,
//!   fixed seed) on a multi-thread runtime with a consumer draining the event stream; the
//!   median wall time per task is compared with the 20 µs target.
//! - The simulator schedules a random DAG with durations on 64 and 256 slots: its makespan
//!   against the lower bound max(critical path, work / slots). (With unlimited slots it equals
//!   the critical path by construction; tests/report.rs pins that as a property, it is no
//!   figure.)
//! - The real engine's schedule: for each real run record of the demo in
//!   `tests/fixtures/runs/real/`, its measured makespan against the critical path of its own
//!   DAG at its measured durations (the figure `kprov profile RUN` prints as
//!   "Makespan / DAG critical path"), and how close a replay of it comes.

use std::time::{Duration, Instant};

use kprov::engine::{
    Class, Done, FnWork, Graph, GraphBuilder, Limits, RunOptions, TaskDef, run, simulate,
};
use kprov::record::store::read_record;
use kprov::report::{Analysis, Strategy, replay};
use tokio_util::sync::CancellationToken;

const TASKS: usize = 10_000;
const DEPS: usize = 3;
const RUNS: usize = 7;
const TARGET_US_PER_TASK: f64 = 20.0;

/// splitmix64: a few lines of well-mixed, reproducible randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Up to `DEPS` distinct dependencies per task, each on an earlier task.
fn random_deps(n: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let mut deps = Vec::new();
            for _ in 0..DEPS.min(i) {
                let d = rng.below(i);
                if !deps.contains(&d) {
                    deps.push(d);
                }
            }
            deps
        })
        .collect()
}

fn zero_work_graph(deps: &[Vec<usize>]) -> Graph {
    let mut b = GraphBuilder::new();
    for (i, ds) in deps.iter().enumerate() {
        let work = FnWork::new(|_| Box::pin(async { Ok(Done::Ran) }));
        b.add(
            TaskDef::new(format!("task:{i}"), work)
                .with_deps(ds.iter().map(|d| format!("task:{d}")))
                .with_class(Class::ALL[i % 3])
                .with_priority((i % 7) as u64),
        );
    }
    b.build().expect("a valid graph")
}

struct Measured {
    build: Duration,
    run: Duration,
    events: usize,
}

fn measure(runtime: &tokio::runtime::Runtime, deps: &[Vec<usize>], limits: &Limits) -> Measured {
    let started = Instant::now();
    let graph = zero_work_graph(deps);
    let build = started.elapsed();
    runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let consumer = tokio::spawn(async move {
            let mut n = 0;
            while rx.recv().await.is_some() {
                n += 1;
            }
            n
        });
        let opts = RunOptions {
            limits: limits.clone(),
            keep_going: false,
            timeout: None,
            interrupt: CancellationToken::new(),
        };
        let started = Instant::now();
        let summary = run(graph, opts, tx).await;
        let run = started.elapsed();
        assert!(summary.succeeded(), "every zero-work task succeeds");
        let events = consumer.await.expect("the consumer ends");
        Measured { build, run, events }
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn us_per_task(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6 / TASKS as f64
}

/// The real engine on real work: each real record's makespan over its DAG's critical path at
/// its measured durations, and its replay's error.
fn real_runs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs/real");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|x| x == "json"));
    paths.sort();
    println!(
        "real engine (records of real `kprov up --service demo --no-cache` runs in {}):",
        dir.display()
    );
    for path in paths {
        let r = match read_record(&path) {
            Ok(r) => r,
            Err(e) => {
                println!("  {e}");
                continue;
            }
        };
        let a = Analysis::new(&r);
        let (Some(dag), Some(ratio)) = (&a.dag_critical_path, a.makespan_over_dag_critical_path())
        else {
            continue;
        };
        let replayed = r
            .strategy
            .parse::<Strategy>()
            .ok()
            .and_then(|own| replay(&r, own, None).ok())
            .map_or_else(String::new, |p| {
                format!(
                    "; replayed under its own schedule: {} ms ({:+.2}%)",
                    p.makespan_ms,
                    (p.makespan_ms as f64 / r.makespan_ms as f64 - 1.0) * 100.0
                )
            });
        println!(
            "  {} ({}, jobs {}): makespan {} ms / DAG critical path {} ms = {ratio:.3}{replayed}",
            r.run_id, r.strategy, r.jobs, r.makespan_ms, dag.length_ms
        );
    }
}

fn main() {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let deps = random_deps(TASKS, 0x006b_7072_6f76);
    let edges: usize = deps.iter().map(Vec::len).sum();
    println!(
        "engine overhead: {TASKS} zero-work tasks, {edges} edges (random DAG, fixed seed), \
         multi-thread runtime ({workers} workers), events drained by a consumer task"
    );

    let configs = [
        ("unlimited", Limits::unlimited()),
        ("jobs=8, cpu=2", Limits::jobs(8).with_class(Class::Cpu, 2)),
    ];
    let mut verdict = true;
    for (name, limits) in &configs {
        measure(&runtime, &deps, limits); // warm-up
        let runs: Vec<Measured> = (0..RUNS)
            .map(|_| measure(&runtime, &deps, limits))
            .collect();
        let walls: Vec<String> = runs
            .iter()
            .map(|m| format!("{:.1}", m.run.as_secs_f64() * 1e3))
            .collect();
        let per_task = median(runs.iter().map(|m| us_per_task(m.run)).collect());
        let build = median(runs.iter().map(|m| us_per_task(m.build)).collect());
        let ok = per_task < TARGET_US_PER_TASK;
        verdict &= ok;
        println!("  limits {name}:");
        println!("    run wall time per run (ms): {}", walls.join(", "));
        println!(
            "    run: median {per_task:.2} µs/task (target < {TARGET_US_PER_TASK} µs): {}",
            if ok { "ok" } else { "MISSED" }
        );
        println!(
            "    graph build + validation (not in the figure above): median {build:.2} µs/task"
        );
        println!("    events per run: {}", runs[0].events);
    }

    println!("schedule quality (simulator):");
    let durations: Vec<u64> = {
        let mut rng = Rng(42);
        (0..TASKS).map(|_| 1 + rng.below(60_000) as u64).collect()
    };
    let priorities = simulate::remaining_critical_path(&deps, &durations).expect("a DAG");
    let tasks: Vec<simulate::SimTask> = (0..TASKS)
        .map(|i| simulate::SimTask {
            deps: deps[i].clone(),
            duration_ms: durations[i],
            class: Class::ALL[i % 3],
            priority: priorities[i],
        })
        .collect();
    let (path, length) = simulate::critical_path(&deps, &durations).expect("a DAG");
    println!("  critical path {length} ms ({} tasks)", path.len());
    let total: u64 = durations.iter().sum();
    let started = Instant::now();
    for jobs in [64, 256] {
        let s = simulate::simulate(&tasks, &Limits::jobs(jobs)).expect("a DAG");
        let bound = length.max(total / jobs as u64);
        println!(
            "  jobs={jobs}: makespan {} ms, {:.3} x the lower bound max(critical path, work/jobs)",
            s.makespan_ms,
            s.makespan_ms as f64 / bound as f64
        );
    }
    println!(
        "  simulating {TASKS} tasks takes {:.1} ms (mean of the two runs above)",
        started.elapsed().as_secs_f64() * 1e3 / 2.0
    );
    real_runs();
    println!(
        "verdict: {}",
        if verdict {
            "all targets met"
        } else {
            "a target was missed"
        }
    );
}
