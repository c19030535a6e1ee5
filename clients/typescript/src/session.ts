// ratchet's Session virtual object, typed from proto/ for the official
// Restate ingress client (@restatedev/restate-sdk-clients), unmodified.
// Every handler takes JSON; view, cancel and drain take `{}`.
import type { VirtualObjectDefinition } from "@restatedev/restate-sdk-core";
import type { TurnBody } from "./generated/Session.turn.request.js";
import type { TurnResult } from "./generated/Session.turn.response.js";
import type { SubmitReply } from "./generated/Session.submit.response.js";
import type { ConfigureBody } from "./generated/Session.configure.request.js";
import type { ConfigureReply } from "./generated/Session.configure.response.js";
import type { NoInput } from "./generated/Session.view.request.js";
import type { SessionView } from "./generated/Session.view.response.js";
import type { CancelReply } from "./generated/Session.cancel.response.js";
import type { Nullable_TurnResult } from "./generated/Session.drain.response.js";
import type { ApproveBody } from "./generated/Session.approve.request.js";
import type { ApproveReply } from "./generated/Session.approve.response.js";
import type { CompleteToolBody } from "./generated/Session.complete_tool.request.js";
import type { CompleteToolReply } from "./generated/Session.complete_tool.response.js";
import type { ErrorReply } from "./generated/error.js";

export type {
  TurnBody, TurnResult, SubmitReply, ConfigureBody, ConfigureReply, SessionView, CancelReply, ErrorReply,
  ApproveBody, ApproveReply, CompleteToolBody, CompleteToolReply,
};

// The first parameter of each handler stands for the handler's context,
// which the ingress client drops.
type SessionHandlers = {
  turn(ctx: unknown, body: TurnBody): Promise<TurnResult>;
  submit(ctx: unknown, body: TurnBody): Promise<SubmitReply>;
  steer(ctx: unknown, body: TurnBody): Promise<SubmitReply>;
  configure(ctx: unknown, body: ConfigureBody): Promise<ConfigureReply>;
  view(ctx: unknown, body: NoInput): Promise<SessionView>;
  cancel(ctx: unknown, body: NoInput): Promise<CancelReply>;
  drain(ctx: unknown, body: NoInput): Promise<Nullable_TurnResult>;
  approve(ctx: unknown, body: ApproveBody): Promise<ApproveReply>;
  complete_tool(ctx: unknown, body: CompleteToolBody): Promise<CompleteToolReply>;
};

/** The default agent object; an agent bound under another name is `{ name: "<agent>" }`. */
export const Session: VirtualObjectDefinition<"Session", SessionHandlers> = { name: "Session" };

/** ratchet's error code and text from an error reply's message (`<code>: <text>`). */
export function ratchetError(reply: ErrorReply): { code: string; text: string } | undefined {
  const at = reply.message.indexOf(": ");
  const code = at > 0 ? reply.message.slice(0, at) : "";
  return /^[a-z_]+$/.test(code) ? { code, text: reply.message.slice(at + 2) } : undefined;
}
