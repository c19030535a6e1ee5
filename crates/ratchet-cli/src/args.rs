//! The command line: the `ratchet` binary's arguments, subcommands and
//! the option groups they share.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Crash-resilient LLM agent turns.
#[derive(Parser)]
#[command(name = "ratchet", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Export traces to this OTLP/HTTP endpoint (a base URL such as
    /// `http://127.0.0.1:4318`; `/v1/traces` is added). Also on when the
    /// standard `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Off by default.
    #[arg(long, global = true, env = "RATCHET_OTLP_ENDPOINT")]
    pub(crate) otlp_endpoint: Option<String>,
}

/// Where the store is and which model to use.
#[derive(clap::Args, Clone)]
pub(crate) struct StoreArgs {
    /// SQLite database file of the embedded store.
    #[arg(
        long,
        global = true,
        default_value = ".ratchet/ratchet.db",
        env = "RATCHET_DB"
    )]
    pub(crate) db: PathBuf,
    /// Store instead of `--db`: `sqlite:PATH`, `postgres:URL`
    /// (postgres://user:password@host:port/db; the password is never
    /// printed), or `memory` (ephemeral: the durable tier refuses it).
    #[arg(long, global = true, env = "RATCHET_STORE", hide_env_values = true)]
    pub(crate) store: Option<String>,
    /// Session execution lease TTL; renewed while a turn's effects run.
    #[arg(
        long,
        global = true,
        default_value_t = 30_000,
        env = "RATCHET_LEASE_TTL_MS"
    )]
    pub(crate) lease_ttl_ms: u64,
    /// Connections in the PostgreSQL pool.
    #[arg(long, global = true, default_value_t = ratchet::store::POSTGRES_DEFAULT_POOL_SIZE, env = "RATCHET_PG_POOL_SIZE")]
    pub(crate) pg_pool_size: usize,
    /// TLS to PostgreSQL: disable, prefer, require, verify-ca or
    /// verify-full (libpq's meanings; overrides the URL's `sslmode`).
    #[arg(long, global = true, env = "PGSSLMODE")]
    pub(crate) pg_sslmode: Option<String>,
    /// PEM file of the CA certificates that sign the PostgreSQL server's
    /// certificate (overrides the URL's `sslrootcert`; default: the
    /// Mozilla roots).
    #[arg(long, global = true, env = "PGSSLROOTCERT")]
    pub(crate) pg_ssl_root_cert: Option<PathBuf>,
    /// Model: `demo` (offline rule-based stand-in), `scripted:FILE`, or
    /// `openai:MODEL` (key from OPENAI_API_KEY, base URL from OPENAI_BASE_URL),
    /// or `anthropic:MODEL` (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL).
    #[arg(long, global = true, default_value = "demo", env = "RATCHET_MODEL")]
    pub(crate) model: String,
    /// Longest one model call may take; a call over it is a failed attempt,
    /// retried up to 3 attempts in all, then the turn stops `provider_error`.
    #[arg(
        long,
        global = true,
        default_value_t = 120_000,
        env = "RATCHET_MODEL_TIMEOUT_MS"
    )]
    pub(crate) model_timeout_ms: u64,
    /// Longest one tool call may take, unless the tool declares its own; a
    /// timed-out call is retried once (never for `unsafe` tools), then the
    /// turn stops `tool_failure`.
    #[arg(
        long,
        global = true,
        default_value_t = 60_000,
        env = "RATCHET_TOOL_TIMEOUT_MS"
    )]
    pub(crate) tool_timeout_ms: u64,
    /// Largest step record, in bytes of JSON; a larger one (a huge model
    /// answer) stops the turn `runtime_error` instead of reaching the journal.
    #[arg(
        long,
        global = true,
        default_value_t = 256 * 1024,
        env = "RATCHET_MAX_STEP_RECORD_BYTES"
    )]
    pub(crate) max_step_record_bytes: usize,
    /// Count every model and tool call in the store's effect ledger
    /// (`ratchet effects`), for failure testing; a store write per effect.
    #[arg(long, global = true, env = "RATCHET_EFFECT_LEDGER")]
    pub(crate) effect_ledger: bool,
    /// Tools whose every call waits for a person's approval before it runs
    /// (comma-separated): decide with `ratchet approve`, or the `approve`
    /// handler on the durable tier.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        env = "RATCHET_APPROVE_TOOLS"
    )]
    pub(crate) approve_tools: Vec<String>,
    /// How long a call waits for approval before it expires; the model is
    /// then told the tool did not run.
    #[arg(
        long,
        global = true,
        default_value_t = 24 * 60 * 60 * 1000,
        env = "RATCHET_APPROVAL_TIMEOUT_MS"
    )]
    pub(crate) approval_timeout_ms: u64,
    /// How SQLite syncs a commit: `full` (survives power loss; the default)
    /// or `normal` (faster; the last commits may be lost on an OS crash).
    #[arg(
        long,
        global = true,
        default_value = "full",
        env = "RATCHET_SQLITE_SYNC"
    )]
    pub(crate) sqlite_sync: String,
}

/// The tool call a decision or a result is for, and where it goes.
#[derive(clap::Args, Clone)]
pub(crate) struct WaitTarget {
    /// The session.
    #[arg(long)]
    pub(crate) session: String,
    /// The waiting tool call's id (`view` lists them).
    #[arg(long = "call")]
    pub(crate) call_id: String,
    /// A Restate ingress URL: go through the agent object's `approve` or
    /// `complete_tool` handler there (the durable tier); else the store.
    #[arg(long)]
    pub(crate) ingress: Option<String>,
    /// The agent object (with `--ingress`).
    #[arg(long, default_value = "Session")]
    pub(crate) object: String,
}

/// Where a durable turn's journal is read from.
#[derive(clap::Args, Clone)]
pub(crate) struct JournalArgs {
    /// A Restate invocation id: read the turn from its journal.
    #[arg(long)]
    pub(crate) invocation: Option<String>,
    #[command(flatten)]
    pub(crate) access: AdminAccess,
}

/// How to reach the Restate admin API (`cancel`, export and replay of a
/// durable turn).
#[derive(Args, Clone)]
pub(crate) struct AdminAccess {
    /// The Restate admin API: http or https.
    #[arg(
        long = "restate-admin",
        visible_alias = "admin",
        default_value = "http://127.0.0.1:9070",
        env = "RATCHET_RESTATE_ADMIN"
    )]
    pub(crate) restate_admin: String,
    /// Bearer token for an admin API behind an authenticating proxy
    /// (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "RATCHET_RESTATE_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// Limit on one admin API call.
    #[arg(
        long,
        default_value_t = 10_000,
        env = "RATCHET_RESTATE_ADMIN_TIMEOUT_MS"
    )]
    pub(crate) admin_timeout_ms: u64,
    /// PEM file of extra CA certificates for an https admin URL.
    #[arg(long, env = "RATCHET_RESTATE_ADMIN_CA_FILE")]
    pub(crate) admin_ca_file: Option<PathBuf>,
}

impl AdminAccess {
    /// The admin client's settings.
    pub(crate) fn config(&self) -> ratchet::restate::admin::AdminConfig {
        ratchet::restate::admin::AdminConfig {
            url: self.restate_admin.clone(),
            token: self.admin_token.clone(),
            timeout: std::time::Duration::from_millis(self.admin_timeout_ms),
            ca_file: self.admin_ca_file.clone(),
        }
    }
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run one turn now and print it.
    Turn {
        #[command(flatten)]
        store: StoreArgs,
        /// The session.
        #[arg(long)]
        session: String,
        /// Idempotency id of the input (a fresh one by default).
        #[arg(long)]
        input_id: Option<String>,
        /// Print the assembled turn as one JSON object.
        #[arg(long)]
        json: bool,
        /// The user's text.
        text: String,
    },
    /// Add an input to the session's inbox without running it.
    Submit {
        #[command(flatten)]
        store: StoreArgs,
        /// The session.
        #[arg(long)]
        session: String,
        /// Idempotency id of the input (a fresh one by default).
        #[arg(long)]
        input_id: Option<String>,
        /// Steer the running turn: its next model call takes the text
        /// (queued as an ordinary input when no turn takes it).
        #[arg(long)]
        steer: bool,
        /// The user's text.
        text: String,
    },
    /// Queue a session command (system prompt or context limit); it applies
    /// when the session's next input is claimed.
    Configure {
        #[command(flatten)]
        store: StoreArgs,
        /// The session.
        #[arg(long)]
        session: String,
        /// Idempotency id of the command (a fresh one by default).
        #[arg(long)]
        command_id: Option<String>,
        /// Replace the session's system prompt.
        #[arg(
            long,
            conflicts_with = "context_limit",
            required_unless_present = "context_limit"
        )]
        system_prompt: Option<String>,
        /// History messages kept in the model's context.
        #[arg(long)]
        context_limit: Option<u32>,
    },
    /// Run every pending input of the session, oldest first.
    Drain {
        #[command(flatten)]
        store: StoreArgs,
        /// The session.
        #[arg(long)]
        session: String,
        /// Print the turns as JSON (one object per line).
        #[arg(long)]
        json: bool,
    },
    /// Print the session's view as JSON: head, the latest messages and the
    /// first pending inputs with their total (what the `view` handler answers).
    View {
        #[command(flatten)]
        store: StoreArgs,
        /// The session.
        #[arg(long)]
        session: String,
    },
    /// Print the session's committed history.
    History {
        #[command(flatten)]
        store: StoreArgs,
        /// The session.
        #[arg(long)]
        session: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the session's events after a cursor.
    Events {
        #[command(flatten)]
        store: StoreArgs,
        /// The session.
        #[arg(long)]
        session: String,
        /// Only events after this cursor.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Print how many times each effect (model or tool call) ran, as JSON.
    Effects {
        #[command(flatten)]
        store: StoreArgs,
        /// The session.
        #[arg(long)]
        session: String,
    },
    /// Decide a tool call that waits for approval: in the store (an inline
    /// turn; then `ratchet resume` continues it), or through a Restate
    /// ingress (`--ingress`: the durable tier's `approve` handler, which
    /// resumes the suspended turn at once).
    Approve {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        target: WaitTarget,
        /// Reject the call instead of approving it.
        #[arg(long)]
        reject: bool,
        /// A note; a rejection's reaches the model.
        #[arg(long)]
        note: Option<String>,
    },
    /// Complete a tool call that answered "pending" with its result: in the
    /// store (an inline turn; then `ratchet resume`), or through a Restate
    /// ingress (`--ingress`: the durable tier's `complete_tool` handler).
    CompleteTool {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        target: WaitTarget,
        /// The result, as the model will see it.
        #[arg(long)]
        content: String,
        /// The result is an error.
        #[arg(long)]
        error: bool,
    },
    /// Finish inline turns whose process died, or that parked waiting for
    /// approval or a tool's result, from their checkpoints.
    Resume {
        #[command(flatten)]
        store: StoreArgs,
        /// The session.
        #[arg(long)]
        session: String,
        /// Take over even while the dead turn's lease has not expired.
        #[arg(long)]
        force: bool,
        /// Print the resumed turns as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a turn's recording to stdout: an inline turn from its
    /// checkpoints (`--session`, `--turn`), or a durable turn from Restate's
    /// journal (`--invocation`).
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// The session (inline turn).
        #[arg(long, requires = "turn", conflicts_with = "invocation")]
        session: Option<String>,
        /// The (root) turn id (inline turn).
        #[arg(long, requires = "session")]
        turn: Option<String>,
        #[command(flatten)]
        journal: JournalArgs,
    },
    /// Print the Restate request identity public key (`publickeyv1_…`) of
    /// an ed25519 private key PEM file, the value `serve --identity-key`
    /// takes.
    IdentityKey {
        /// The PEM file restate-server's
        /// `request-identity-private-key-pem-file` names.
        pem: PathBuf,
    },
    /// Run the crash matrix on a real restate-server: every fault point of
    /// every scenario, checked against a crash-free run.
    Chaos {
        /// A subset that fits in a few minutes (what CI runs).
        #[arg(long)]
        quick: bool,
        /// Only this scenario (plain, tools, frame, approval).
        #[arg(long)]
        scenario: Option<String>,
    },
    /// Measure a durable turn against the orchestrator's floor, the inline
    /// tier, growth with history and memory; last line: the JSON report.
    Bench {
        /// A smaller run (under 3 minutes).
        #[arg(long)]
        quick: bool,
        /// Instead: 1 vs 3 Restate nodes and 1 vs 2 instances on the
        /// cluster rig this `scripts/cluster.sh` starts (what
        /// `scripts/cluster.sh bench` runs).
        #[arg(long, value_name = "CLUSTER_SH")]
        cluster: Option<PathBuf>,
    },
    /// Serve the Restate endpoint (the `Session` virtual object).
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:9080")]
        listen: std::net::SocketAddr,
        /// A TOML file of agents to serve, each its own virtual object
        /// (default: one agent, `Session`, from the flags).
        #[arg(long, env = "RATCHET_AGENTS")]
        agents: Option<PathBuf>,
        /// Also bind the `Floor` benchmark object (nine no-op steps).
        #[arg(long, env = "RATCHET_WITH_FLOOR")]
        with_floor: bool,
        #[command(flatten)]
        admin_access: AdminAccess,
        /// A Restate request identity public key (`publickeyv1_…`), the
        /// counterpart of restate-server's
        /// `request-identity-private-key-pem-file`. Repeatable (comma-
        /// separated in the variable); with keys set, a request no key
        /// signed gets 401 and changes nothing.
        #[arg(
            long = "identity-key",
            env = "RATCHET_IDENTITY_KEYS",
            value_delimiter = ','
        )]
        identity_keys: Vec<String>,
        /// On SIGTERM or Ctrl-C: how long in-flight handlers may run on
        /// before their connections are cut (Restate then retries them).
        #[arg(long, default_value_t = 30_000, env = "RATCHET_SHUTDOWN_TIMEOUT_MS")]
        shutdown_timeout_ms: u64,
        /// Longest delay between Restate's retries of a failed invocation.
        #[arg(long, default_value_t = 10_000, env = "RATCHET_RETRY_MAX_INTERVAL_MS")]
        retry_max_interval_ms: u64,
        /// Attempts before `--on-max-attempts` (default: retry for as long
        /// as it takes, so no outage kills a turn).
        #[arg(long, env = "RATCHET_RETRY_MAX_ATTEMPTS")]
        retry_max_attempts: Option<u64>,
        /// What a bounded retry policy does at its end: `pause` (an
        /// operator resumes it) or `kill` (the next invocation of the
        /// session settles its input as stopped).
        #[arg(long, default_value = "pause", env = "RATCHET_ON_MAX_ATTEMPTS")]
        on_max_attempts: String,
        /// How long a turn may make no progress before Restate asks it to
        /// suspend: a turn waiting for an approval then holds no connection
        /// or task. Also the margin the abort timer adds to the longest
        /// step's budget, so no step within its own timeouts is cut.
        #[arg(long, default_value_t = 10_000, env = "RATCHET_INACTIVITY_TIMEOUT_MS")]
        inactivity_timeout_ms: u64,
        /// Also serve the observation API here (HTTP/1.1): the event
        /// stream `GET /sessions/{id}/events` and the view `GET /sessions/{id}`.
        #[arg(long, env = "RATCHET_HTTP")]
        http: Option<std::net::SocketAddr>,
        /// A bearer token the observation API requires.
        #[arg(long, env = "RATCHET_HTTP_TOKEN", hide_env_values = true)]
        http_token: Option<String>,
    },
    /// Replay a recorded turn against this build, every effect served from
    /// the recording; print `replay ok` or the first divergent step.
    Replay {
        #[command(flatten)]
        store: StoreArgs,
        /// The recording file.
        #[arg(
            long,
            required_unless_present = "invocation",
            conflicts_with = "invocation"
        )]
        recording: Option<PathBuf>,
        #[command(flatten)]
        journal: JournalArgs,
    },
}
