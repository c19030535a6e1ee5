// Opens the timeline page in headless Chromium (playwright-core driving the
// distribution's /usr/bin/chromium) and reports what the DOM shows, as one
// JSON line per stage on stdout:
//   {"stage":"first", ...}  once `TURNS_FIRST` turns are committed on screen
//   {"stage":"live", ...}   once `TURNS_LIVE` are (the test starts more turns
//                            after the first line, with the page left open)
// and keeps a screenshot at SCREENSHOT.
//   URL=... SCREENSHOT=... TURNS_FIRST=1 TURNS_LIVE=2 node timeline.mjs
import { chromium } from "playwright-core";

const url = process.env.URL;
const shot = process.env.SCREENSHOT;
const first = Number(process.env.TURNS_FIRST || "1");
const live = Number(process.env.TURNS_LIVE || "0");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  // A stage is reported once `n` turns are committed on screen and the
  // message list (reloaded after each commit) has grown past `shown`.
  let shown = 0;
  const report = async (stage, n) => {
    await page.waitForFunction(
      ([n, shown]) => document.querySelectorAll('section.turn[data-status="committed"]').length >= n
        && document.querySelectorAll("#message-list .msg").length > shown,
      [n, shown], { timeout: 60000 });
    shown = await page.evaluate(() => document.querySelectorAll("#message-list .msg").length);
    const dom = await page.evaluate(() => ({
      connection: document.getElementById("conn").dataset.state,
      turns: [...document.querySelectorAll("section.turn")].map((t) => ({
        id: t.dataset.turnId,
        status: t.dataset.status,
        outcome: t.dataset.outcome,
        steps: [...t.querySelectorAll(".row[data-step]")].map((r) => ({
          step: r.dataset.step,
          duration_ms: Number(r.dataset.durationMs),
          replayed_before: Number(r.dataset.replayedBefore),
          width: r.querySelector(".bar").style.width,
        })),
        markers: [...t.querySelectorAll(".marker")].map((m) => Number(m.dataset.replayed)),
        gaps: [...t.querySelectorAll(".row[data-gap]")].map((r) => r.dataset.gap),
        header: t.querySelector("header").textContent,
      })),
      messages: [...document.querySelectorAll("#message-list .msg")].map((m) => ({
        role: m.dataset.role, text: m.querySelector(".text").textContent })),
    }));
    console.log(JSON.stringify({ stage, errors, ...dom }));
  };
  await report("first", first);
  if (live > first) {
    await report("live", live);
  }
  await page.screenshot({ path: shot, fullPage: true });
} finally {
  await browser.close();
}
