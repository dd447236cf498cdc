//! One run from start to end: setup (untimed), the money read back, the timed phases, the
//! money read back again, the check, the report.

use crate::drive::{drive, Plan};
use crate::report::{Check, Config, Report};
use crate::stats::Live;
use crate::target::{
    postgres::Postgres, redis::Redis, svault_http::SvaultHttp, svault_tcp::SvaultTcp, Backend,
};
use crate::workload::{Dist, Mix, Profile, Workload};
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything a run needs (the CLI's flags).
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub target: String,
    /// svault's HTTP address (`HOST:PORT`) for a `tcp://` target's program.
    pub admin: Option<String>,
    pub cards: u64,
    pub dist: Option<Dist>,
    pub profile: Profile,
    pub mix: Option<Mix>,
    pub rate: u64,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub pipeline: usize,
    pub batch: usize,
    pub seed: u64,
    pub run_id: u64,
    pub label: Option<String>,
    pub keep: bool,
    pub quiet: bool,
    /// svault HTTP target: open and fund the cards over this `tcp://` door.
    pub setup_via: Option<String>,
    /// svault targets: how the server was started, for the report.
    pub durability_note: Option<String>,
}

impl RunSpec {
    /// The workload these flags describe.
    pub fn workload(&self) -> Result<Workload, String> {
        Workload::new(
            self.cards,
            self.dist.unwrap_or(self.profile.default_dist()),
            self.mix.clone().unwrap_or_else(|| self.profile.mix()),
            self.profile,
            self.seed,
        )
    }
}

/// Runs `spec` against its target and returns the report (whose `check.ok` says whether the
/// money matched).
pub async fn run(spec: &RunSpec) -> anyhow::Result<Report> {
    let t = spec.target.as_str();
    if t.starts_with("http://") {
        let mut b = SvaultHttp::new(t, spec.run_id)?;
        b.setup_via = spec.setup_via.clone();
        if let Some(d) = &spec.durability_note {
            b.durability = d.clone();
        }
        run_on(b, spec).await
    } else if t.starts_with("tcp://") {
        let admin = match &spec.admin {
            Some(a) => a
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string(),
            None => {
                let hp = crate::target::svault_http::host_port(t, "tcp")?;
                let host = hp.rsplit_once(':').map_or(hp.as_str(), |(h, _)| h);
                format!("{host}:8080")
            }
        };
        let mut b = SvaultTcp::new(t, &admin, spec.run_id, spec.pipeline)?;
        if let Some(d) = &spec.durability_note {
            b.durability = d.clone();
        }
        run_on(b, spec).await
    } else if t.starts_with("postgres://") || t.starts_with("postgresql://") {
        run_on(Postgres::new(t, spec.run_id, spec.keep), spec).await
    } else if t.starts_with("redis://") {
        run_on(Redis::new(t, spec.run_id, spec.keep, spec.pipeline)?, spec).await
    } else {
        bail!("unknown target {t:?}: expected http://, tcp://, postgres:// or redis://")
    }
}

fn say(spec: &RunSpec, msg: &str) {
    if !spec.quiet {
        eprintln!("{msg}");
    }
}

async fn run_on<B: Backend>(mut b: B, spec: &RunSpec) -> anyhow::Result<Report> {
    let w = Arc::new(spec.workload().map_err(anyhow::Error::msg)?);
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    say(
        spec,
        &format!("setup: {} cards on {} (untimed)…", w.cards, spec.target),
    );
    let t0 = Instant::now();
    let loaded = b.setup(&w).await.context("setup")?;
    let setup_seconds = t0.elapsed().as_secs_f64();
    let before = b
        .money()
        .await
        .context("reading the money back after setup")?;
    say(spec, &format!("setup done in {setup_seconds:.1} s"));
    let workers = spec.connections.max(1) * spec.pipeline.max(1);
    let mut conns = Vec::with_capacity(workers);
    for _ in 0..workers {
        conns.push(b.connect().await.context("connecting")?);
    }
    let plan = Plan {
        rate: spec.rate,
        warmup: spec.warmup,
        duration: spec.duration,
        batch: spec.batch.max(1),
    };
    let live = Arc::new(Live::default());
    let bar = progress(spec, live.clone());
    let rec = drive(conns, w.clone(), plan, live).await;
    if let Some((bar, ticker)) = bar {
        ticker.abort();
        bar.finish_and_clear();
    }
    let actual = b
        .money()
        .await
        .context("reading the money back at the end")?;
    let check = Check::new(
        &loaded,
        before,
        rec.ledger.approved_delta,
        rec.ledger.at_stake,
        actual,
    );
    if let Err(e) = b.cleanup().await {
        say(
            spec,
            &format!("cleanup failed (the run's data stays on the target): {e:#}"),
        );
    }
    let info = b.info();
    let config = Config {
        cards: w.cards,
        dist: w.dist.to_string(),
        profile: w.profile.as_str().into(),
        mix: w.mix.to_string(),
        rate: spec.rate,
        duration_s: spec.duration.as_secs_f64(),
        warmup_s: spec.warmup.as_secs_f64(),
        connections: spec.connections,
        pipeline: spec.pipeline,
        batch: spec.batch,
        seed: spec.seed,
        run_id: spec.run_id,
    };
    let label = spec.label.clone().unwrap_or_else(|| info.kind.clone());
    Ok(Report::build(
        label,
        started_at,
        info,
        config,
        setup_seconds,
        loaded.cards,
        &rec,
        check,
    ))
}

/// The progress bar (hidden when stderr is not a terminal or with `--quiet`) and its ticker.
fn progress(spec: &RunSpec, live: Arc<Live>) -> Option<(ProgressBar, tokio::task::JoinHandle<()>)> {
    if spec.quiet {
        return None;
    }
    let total = (spec.warmup + spec.duration).as_secs().max(1);
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} s  {msg}") {
        bar.set_style(style);
    }
    let b = bar.clone();
    let warm = spec.warmup.as_secs();
    let ticker = tokio::spawn(async move {
        let mut last = 0u64;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        for s in 1.. {
            tick.tick().await;
            let done = live.done.load(std::sync::atomic::Ordering::Relaxed);
            let errors = live.errors.load(std::sync::atomic::Ordering::Relaxed);
            let refused = live.refused.load(std::sync::atomic::Ordering::Relaxed);
            let p99 = live.take_p99_us().map_or("-".to_string(), |us| {
                format!("{:.2} ms", us as f64 / 1000.0)
            });
            let phase = if s <= warm { "warm-up " } else { "" };
            b.set_position(s);
            b.set_message(format!(
                "{phase}{}/s  p99 {p99}  errors {errors}  refused {refused}",
                done - last
            ));
            last = done;
        }
    });
    Some((bar, ticker))
}
