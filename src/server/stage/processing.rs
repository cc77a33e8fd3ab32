//! Which kind of stage the processing thread runs: a local processor (the
//! one given, or the one `--processor` names), the takers of a
//! [`Handoff`](crate::process::takers::Handoff), or a worker pool.

use super::{handoff::Takers, local::Local, HandOff, Joined};
use crate::process::takers::Wants;
use crate::process::{self, ProcessingCounts, Processor};
use crate::server::ServerConfig;
use crate::shutdown::Shutdown;
use anyhow::Result;
use crossbeam_channel::Receiver;
use std::sync::Arc;

/// The processing thread's stage, chosen before the server serves.
pub(crate) enum Processing {
    Local(Local),
    Takers(Takers),
    #[cfg(feature = "nats")]
    Pool(Box<super::pool::Pool>),
}

impl Processing {
    /// Takers when given, else the processor given, else a pool when the
    /// config names one, else the processor the config names; with its
    /// name for figures and logs. Every kind hands frames under one rule
    /// ([`HandOff`]: fresh, or answered `expired`), counted in `counts`.
    pub(crate) fn choose(
        takers: Option<Wants>,
        processor: Option<Box<dyn Processor>>,
        config: &ServerConfig,
        counts: &Arc<ProcessingCounts>,
        shutdown: &Shutdown,
    ) -> Result<(Processing, String)> {
        let hand_off = HandOff::new(config.max_age, counts.clone());
        let local = |p: Box<dyn Processor>| {
            let name = p.name().to_string();
            (Processing::Local(Local::new(p, hand_off.clone())), name)
        };
        Ok(match (takers, processor, &config.pool) {
            (Some(wants), _, _) => {
                let name = wants.name.clone();
                (
                    Processing::Takers(Takers::new(wants, hand_off.clone())),
                    name,
                )
            }
            (None, Some(p), _) => local(p),
            #[cfg(feature = "nats")]
            (None, None, Some(pc)) => {
                let pool = super::pool::Pool::connect(pc.clone(), hand_off.clone())?;
                let name = format!("pool {}", pool.url());
                (Processing::Pool(Box::new(pool)), name)
            }
            #[cfg(not(feature = "nats"))]
            (None, None, Some(_)) => anyhow::bail!(
                "this build has no NATS support: build with the `nats` feature (on by default)"
            ),
            (None, None, None) => local(process::build(&config.processor, shutdown)?),
        })
    }

    /// Runs the stage's loop (see [`super::run`]) until shutdown.
    pub(crate) fn run(self, joined: &Receiver<Joined>, shutdown: &Shutdown) {
        match self {
            Processing::Local(mut p) => super::run(&mut p, joined, shutdown),
            Processing::Takers(mut t) => super::run(&mut t, joined, shutdown),
            #[cfg(feature = "nats")]
            Processing::Pool(mut p) => super::run(&mut *p, joined, shutdown),
        }
    }
}
