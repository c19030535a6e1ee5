//! The inline-tier commands.

use crate::output;
use crate::setup;
use crate::{Command, JournalArgs, StoreArgs};
use anyhow::{Context, Result, bail};
use ratchet::engine::CancelToken;
use ratchet::engine::inline::{InlineRunner, ReplayReport, replay};
use ratchet::journal::Recording;
use ratchet::model::{SessionId, TurnId, TurnInput};
use ratchet::restate::admin;
use ratchet::store::MemoryStore;
use std::sync::Arc;

/// The admin API client the journal flags describe.
fn admin_client(journal: &JournalArgs) -> Result<admin::AdminClient> {
    Ok(admin::AdminClient::new(journal.access.config())?)
}

fn session(s: &str) -> Result<SessionId> {
    Ok(SessionId::new(s)?)
}

async fn runner(store: &StoreArgs) -> Result<InlineRunner> {
    let rt = setup::runtime(setup::open_store(store).await?, store)?;
    Ok(InlineRunner::new(rt, InlineRunner::process_owner()))
}

fn input(text: String, input_id: Option<String>) -> TurnInput {
    let mut input = TurnInput::text(text);
    input.input_id = input_id;
    input
}

/// Cancels the turn on Ctrl-C: it then commits `Stopped(Cancelled)`.
fn cancel_on_ctrl_c() -> CancelToken {
    let token = CancelToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            t.cancel();
        }
    });
    token
}

/// Runs one CLI command.
pub async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Turn {
            store,
            session: s,
            input_id,
            json,
            text,
        } => {
            let r = runner(&store).await?;
            let result = r
                .turn(&session(&s)?, input(text, input_id), &cancel_on_ctrl_c())
                .await?;
            output::turn(&result, json)
        }
        Command::Submit {
            store,
            session: s,
            input_id,
            steer,
            text,
        } => {
            let r = runner(&store).await?;
            let (sid, input) = (session(&s)?, input(text, input_id));
            let e = if steer {
                r.steer(&sid, input).await?
            } else {
                r.submit(&sid, input).await?
            };
            println!(
                "{} {} {} (position {})",
                if e.duplicate {
                    "already queued:"
                } else {
                    "queued"
                },
                if steer { "steer" } else { "input" },
                e.entry.id,
                e.entry.seq
            );
            Ok(())
        }
        Command::Configure {
            store,
            session: s,
            command_id,
            system_prompt,
            context_limit,
        } => {
            use ratchet::model::SessionCommand;
            let command = match (system_prompt, context_limit) {
                (Some(prompt), _) => SessionCommand::SetSystemPrompt { prompt },
                (None, Some(max_messages)) => SessionCommand::SetContextLimit { max_messages },
                (None, None) => bail!("give --system-prompt or --context-limit"),
            };
            let r = runner(&store).await?;
            let e = r.configure(&session(&s)?, command, command_id).await?;
            println!(
                "{} command {} (position {}); it applies with the next input",
                if e.duplicate {
                    "already queued:"
                } else {
                    "queued"
                },
                e.entry.id,
                e.entry.seq
            );
            Ok(())
        }
        Command::Drain {
            store,
            session: s,
            json,
        } => {
            let r = runner(&store).await?;
            let results = r.drain(&session(&s)?, &cancel_on_ctrl_c()).await?;
            if results.is_empty() && !json {
                println!("nothing pending");
            }
            for t in &results {
                output::turn(t, json)?;
            }
            Ok(())
        }
        Command::Approve {
            store,
            target,
            reject,
            note,
        } => crate::approve::run(&store, &target, reject, note).await,
        Command::CompleteTool {
            store,
            target,
            content,
            error,
        } => {
            let result = ratchet::model::ToolCompletion {
                content,
                is_error: error,
                value: None,
            };
            crate::approve::complete(&store, &target, result).await
        }
        Command::View { store, session: s } => {
            let st = setup::open_store(&store).await?;
            let view = ratchet::engine::view_of(st.as_ref(), &session(&s)?).await?;
            println!("{}", serde_json::to_string(&view)?);
            Ok(())
        }
        Command::History {
            store,
            session: s,
            json,
        } => {
            let st = setup::open_store(&store).await?;
            let sid = session(&s)?;
            let head = st.head(&sid).await?;
            let messages = st.messages(&sid, head.version).await?;
            let turns = st.turns(&sid).await?;
            output::history(&head, &messages, &turns, json)
        }
        Command::Events {
            store,
            session: s,
            after,
        } => {
            let st = setup::open_store(&store).await?;
            for e in st.events_after(&session(&s)?, after, usize::MAX).await? {
                println!("{}", serde_json::to_string(&e)?);
            }
            Ok(())
        }
        Command::Effects { store, session: s } => {
            let st = setup::open_store(&store).await?;
            let counts = st.effect_counts(&session(&s)?).await?;
            println!("{}", serde_json::to_string(&counts)?);
            Ok(())
        }
        Command::Resume {
            store,
            session: s,
            force,
            json,
        } => {
            let r = runner(&store).await?;
            let results = r.resume(&session(&s)?, force).await?;
            if results.is_empty() && !json {
                println!("nothing to resume");
            }
            for t in &results {
                output::turn(t, json)?;
            }
            Ok(())
        }
        Command::Export {
            store,
            session: s,
            turn,
            journal,
        } => {
            let rec = match (journal.invocation.clone(), s, turn) {
                (Some(inv), _, _) => admin_client(&journal)?.recording(&inv).await?,
                (None, Some(s), Some(turn)) => {
                    runner(&store)
                        .await?
                        .recording(&session(&s)?, &TurnId::new(turn)?)
                        .await?
                }
                _ => bail!("name a turn: --invocation ID, or --session S --turn T"),
            };
            println!("{}", serde_json::to_string_pretty(&rec)?);
            Ok(())
        }
        Command::Bench { quick, cluster } => {
            let bin = std::env::current_exe().context("cannot find the ratchet binary")?;
            let report = match cluster {
                Some(script) => {
                    let opts =
                        ratchet_testkit::bench::cluster::ClusterOptions { script, quick, bin };
                    ratchet_testkit::bench::cluster::run(&opts).await?
                }
                None => {
                    let opts = ratchet_testkit::bench::BenchOptions { quick, bin };
                    ratchet_testkit::bench::run(&opts).await?
                }
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::IdentityKey { pem } => {
            println!("{}", crate::serve::identity_public_key(&pem)?);
            Ok(())
        }
        Command::Chaos { quick, scenario } => crate::chaos::run(quick, scenario).await,
        Command::Serve {
            store,
            listen,
            with_floor,
            admin_access,
            identity_keys,
            agents,
            shutdown_timeout_ms,
            retry_max_interval_ms,
            retry_max_attempts,
            on_max_attempts,
            inactivity_timeout_ms,
            http,
            http_token,
        } => {
            let settings = crate::serve::ServeSettings {
                listen,
                http,
                http_token,
                agents,
                admin: admin_access.config(),
                identity_keys,
                with_floor,
                shutdown_timeout: std::time::Duration::from_millis(shutdown_timeout_ms),
                durable: crate::serve::durable_options(
                    retry_max_interval_ms,
                    retry_max_attempts,
                    &on_max_attempts,
                    inactivity_timeout_ms,
                )?,
            };
            crate::serve::serve(&store, settings).await
        }
        Command::Replay {
            store,
            recording,
            journal,
        } => {
            let rec: Recording = match (journal.invocation.clone(), recording) {
                (Some(inv), _) => admin_client(&journal)?.recording(&inv).await?,
                (None, Some(file)) => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is not a ratchet recording", file.display()))?
                }
                (None, None) => bail!("name a recording: --recording FILE or --invocation ID"),
            };
            let rt = setup::runtime(Arc::new(MemoryStore::new()), &store)?;
            match replay(&rt, &rec).await? {
                ReplayReport::Ok { steps } => {
                    println!("replay ok ({steps} steps)");
                    Ok(())
                }
                ReplayReport::Diverged {
                    step,
                    expected,
                    actual,
                    divergence,
                } => {
                    println!(
                        "divergence at step '{step}' (step {} of the recording)",
                        divergence.index + 1
                    );
                    println!("  recorded: {expected}");
                    println!("  this build: {actual}");
                    for f in &divergence.fields {
                        println!(
                            "  {}: recorded {}, this build {}",
                            f.field, f.expected, f.actual
                        );
                    }
                    bail!("replay diverged at step '{step}'")
                }
            }
        }
    }
}
