// Runs turn, submit, steer, configure, view, drain and cancel on a real ratchet
// behind a real restate-server through the typed client, and validates
// every reply (errors included) against proto/ with ajv in strict mode.
// Exits non-zero at the first reply that breaks the contract.
//
//   INGRESS=http://127.0.0.1:8080 node dist/check.js
// The service must pause its first turn after its first model call
// (RATCHET_PAUSE), so that `cancel` finds a turn to stop.
import * as clients from "@restatedev/restate-sdk-clients";
import { HttpCallError } from "@restatedev/restate-sdk-clients";
import { Ajv2020 } from "ajv/dist/2020.js";
import fs from "node:fs";
import path from "node:path";
import { Session, ratchetError, type ErrorReply, type SessionView, type TurnResult } from "./session.js";

const proto = path.resolve(import.meta.dirname, "../../../proto");
const ajv = new Ajv2020({ strict: true, allErrors: true });
const load = (file: string): object => JSON.parse(fs.readFileSync(path.join(proto, file), "utf8"));
const codes: { code: string; http_status: number; retryable: boolean }[] = JSON.parse(
  fs.readFileSync(path.join(proto, "error-codes.json"), "utf8"),
);
let checked = 0;

function validate(file: string, value: unknown): void {
  const check = ajv.compile(load(file));
  if (!check(value)) {
    throw new Error(`${file}: ${ajv.errorsText(check.errors)}\n${JSON.stringify(value).slice(0, 600)}`);
  }
  checked += 1;
}

/** Calls `f`, expecting an error reply with `status` and ratchet `code`. */
async function refused(what: string, status: number, code: string, f: () => PromiseLike<unknown>): Promise<void> {
  try {
    await f();
  } catch (e) {
    if (!(e instanceof HttpCallError)) throw e;
    const reply: ErrorReply = JSON.parse(e.responseText);
    validate("error.json", reply);
    const parsed = ratchetError(reply);
    const row = codes.find((c) => c.code === parsed?.code);
    if (e.status !== status || parsed?.code !== code || row?.http_status !== status) {
      throw new Error(`${what}: got ${e.status} ${reply.message}, want ${status} ${code}`);
    }
    console.log(`refused ${what}: ${e.status} ${parsed.code}`);
    return;
  }
  throw new Error(`${what}: accepted`);
}

const ingress = clients.connect({ url: process.env.INGRESS ?? "http://127.0.0.1:8080" });

// cancel: a turn paused after its first model call.
const c1 = ingress.objectClient(Session, "ts-cancel");
const paused = ingress.objectSendClient(Session, "ts-cancel");
await paused.turn({ input: { items: [{ type: "text", text: "What is 17*23+4?" }], input_id: "c-1" } });
let cancelled = false;
for (let i = 0; i < 200 && !cancelled; i++) {
  const reply = await c1.cancel({});
  validate("Session.cancel.response.json", reply);
  cancelled = reply.cancelled;
  if (!cancelled) await new Promise((r) => setTimeout(r, 50));
}
if (!cancelled) throw new Error("cancel never found the running turn");
console.log("cancel: stopped the running turn");

// turn, and the outcome's fields typed as the union says.
const s1 = ingress.objectClient(Session, "ts-1");
const turn: TurnResult = await s1.turn({ input: { items: [{ type: "text", text: "What is 2+2?" }], input_id: "in-1" } });
validate("Session.turn.response.json", turn);
if (turn.outcome.status !== "finished" || turn.outcome.kind !== "assistant_message") {
  throw new Error(`unexpected outcome ${JSON.stringify(turn.outcome)}`);
}
console.log(`turn: ${turn.outcome.text}`);
// The same input id again answers with the committed turn.
const again = await s1.turn({ input: { items: [{ type: "text", text: "What is 2+2?" }], input_id: "in-1" } });
validate("Session.turn.response.json", again);
if (!again.receipt.replayed || again.turn_id !== turn.turn_id) throw new Error("a repeated input ran again");

// submit, configure, drain, view.
const submitted = await s1.submit({ input: { items: [{ type: "text", text: "remember milk" }], input_id: "in-2" } });
validate("Session.submit.response.json", submitted);
const configured = await s1.configure({ command: { command: "set_context_limit", max_messages: 50 } });
validate("Session.configure.response.json", configured);
// A steer joins the turn running then (the drain `submit` sent may have
// started in-2 already) or, with none running, queues as its own input:
// either way both inputs are settled and the model saw both. (The command
// waits for the next input claimed after it: none, when in-3 joined in-2.)
const steered = await s1.steer({ input: { items: [{ type: "text", text: "and eggs" }], input_id: "in-3" } });
validate("Session.steer.response.json", steered);
const drained = await s1.drain({});
validate("Session.drain.response.json", drained);
const settled = (v: SessionView) =>
  v.head.version >= 2 &&
  v.pending.every((e) => e.payload.kind === "command") &&
  ["remember milk", "and eggs"].every((t) => JSON.stringify(v.recent_messages).includes(t));
let view = await s1.view({});
for (let i = 0; i < 200 && !settled(view); i++) {
  await new Promise((r) => setTimeout(r, 50));
  view = await s1.view({});
}
validate("Session.view.response.json", view);
if (!settled(view)) throw new Error(`the submitted inputs never ran: ${JSON.stringify(view.head)}, pending ${JSON.stringify(view.pending)}`);
console.log(`view: version ${view.head.version}, ${view.recent_messages.length} recent messages`);
const stoppedTurn = await c1.view({});
validate("Session.view.response.json", stoppedTurn);

// Errors: one shape, a documented code.
await refused("an empty input", 400, "invalid_input", () => s1.turn({ input: { items: [] } }));
await refused("a body that does not decode", 400, "invalid_request", () =>
  s1.turn({ input: { items: [{ type: "video" }] } } as never),
);
await refused("an input id with other content", 409, "input_conflict", () =>
  s1.turn({ input: { items: [{ type: "text", text: "other" }], input_id: "in-1" } }),
);
await refused("a session that never ran", 404, "unknown_session", () =>
  ingress.objectClient(Session, "ts-never").view({}),
);
console.log(`contract ok: ${checked} replies validated`);
