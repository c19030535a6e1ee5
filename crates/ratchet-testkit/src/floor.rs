//! The benchmark floor: a bare virtual-object handler that journals nine
//! no-op `ctx.run` steps — the orchestrator's own cost for a turn's shape,
//! against which `ratchet bench` measures what ratchet adds. Bound only
//! when `ratchet serve --with-floor` asks for it.

use restate_sdk::prelude::*;
use restate_sdk::serde::Json;

/// The floor object.
pub struct Floor;

#[restate_sdk::object]
impl Floor {
    /// Nine no-op journaled steps, like a turn's claim, prepare, model,
    /// three tools, model, finalize and commit.
    #[handler]
    async fn nine(&self, ctx: ObjectContext<'_>) -> Result<u32, HandlerError> {
        let mut n = 0;
        for i in 0..9u32 {
            n += ctx
                .run(|| async move { Ok(i) })
                .name(format!("noop:{i}"))
                .await?;
        }
        Ok(n)
    }

    /// `count` no-op journaled steps: the floor for a long turn of that
    /// many steps. Returns the sum of the step indices.
    #[handler]
    async fn steps(&self, ctx: ObjectContext<'_>, count: u32) -> Result<u64, HandlerError> {
        let mut n = 0u64;
        for i in 0..count {
            n += u64::from(
                ctx.run(|| async move { Ok(i) })
                    .name(format!("noop:{i}"))
                    .await?,
            );
        }
        Ok(n)
    }

    /// The same nine steps, each journaling `bytes` bytes: the floor for a
    /// turn whose step records are that large.
    #[handler]
    async fn nine_sized(&self, ctx: ObjectContext<'_>, bytes: u32) -> Result<u32, HandlerError> {
        let mut n = 0;
        for i in 0..9u32 {
            let out = ctx
                .run(|| async move { Ok("x".repeat(bytes as usize)) })
                .name(format!("noop:{i}"))
                .await?;
            n += out.len() as u32;
        }
        Ok(n)
    }

    /// The same nine steps, each journaling `bytes` bytes and waiting
    /// `pace_us` microseconds (asleep, no CPU) before it returns: the floor
    /// for a turn that journals that much and spends that long in its steps.
    #[handler]
    async fn nine_paced(
        &self,
        ctx: ObjectContext<'_>,
        input: Json<(u32, u64)>,
    ) -> Result<u32, HandlerError> {
        let (bytes, pace_us) = input.into_inner();
        let mut n = 0;
        for i in 0..9u32 {
            let out = ctx
                .run(|| async move {
                    tokio::time::sleep(std::time::Duration::from_micros(pace_us)).await;
                    Ok("x".repeat(bytes as usize))
                })
                .name(format!("noop:{i}"))
                .await?;
            n += out.len() as u32;
        }
        Ok(n)
    }
}
