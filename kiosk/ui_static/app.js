// The kiosk's touch-screen page: polls GET /api/state, draws it, POSTs a bin choice or a cancel.
// No framework, no build step, nothing loaded from the network (the Pi may be offline).
"use strict";

const POLL_MS = 300;
// no answer for this long: the kiosk process is down or restarting
const OFFLINE_AFTER_MS = 3000;
const REENABLE_MS = 2000;

const $ = (id) => document.getElementById(id);
let shownSeq = null;
let lastAnswerAt = Date.now();
let sending = false;

function cssName(text) {
  return String(text).toLowerCase().replace(/[^a-z0-9-]/g, "-");
}

async function post(path, body) {
  sending = true;
  setButtonsEnabled(false);
  try {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      cache: "no-store",
    });
    if (response.ok) {
      showNotice("");
      // the buttons stay disabled until the kiosk's state moves (no double taps); a
      // choice that changes nothing on screen re-enables them after a moment
      setTimeout(() => { shownSeq = null; }, REENABLE_MS);
      return;
    }
    const answer = await response.json().catch(() => ({}));
    showNotice((answer.error && answer.error.message) || `refused (${response.status})`);
    shownSeq = null;
  } catch (err) {
    showNotice("The kiosk is not answering");
    shownSeq = null;
  } finally {
    sending = false;
  }
}

function showNotice(text) {
  $("notice").textContent = text;
}

function setButtonsEnabled(enabled) {
  for (const button of document.querySelectorAll("#choices button")) {
    button.disabled = !enabled;
  }
}

function drawChoices(view) {
  const box = $("choices");
  box.replaceChildren();
  box.dataset.count = String(view.doors.length);
  for (const door of view.doors) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = `bin cat-${cssName(door.category)}`;
    button.dataset.door = String(door.number);
    button.dataset.category = door.category;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = door.name;
    const number = document.createElement("span");
    number.className = "door";
    number.textContent = `Door ${door.number}`;
    button.append(name, number);
    button.addEventListener("click", () => {
      if (!sending) post("/api/choose", { category: door.category, door: door.number });
    });
    box.append(button);
  }
}

// deposit.status is the station's outcome (a retried upload answered `duplicate` comes as its
// first outcome) and deposit.reason the words the station's own screen uses: no second copy here
function resultLines(deposit) {
  const weighed = `${deposit.net_g} g of ${deposit.category}`;
  if (deposit.status === "flagged") {
    return ["0 points", `Held for review${deposit.reason ? ": " + deposit.reason : ""}`, weighed];
  }
  if (deposit.status === "rejected" || deposit.status === "conflict") {
    return ["Not credited", deposit.reason || "ask the staff", weighed];
  }
  if (deposit.points !== null && deposit.points !== undefined) {
    const balance = deposit.balance === null ? "pending" : `${deposit.balance} points`;
    const why = deposit.reason ? ` (${deposit.reason})` : "";  // e.g. daily limit, under the minimum
    return [`+${deposit.points} points${why}`, `Balance: ${balance}`, weighed];
  }
  if (deposit.label_used) {  // already used here: the backend will most likely flag it
    return ["No points yet", "This label was already used here: it may be held for review", weighed];
  }
  const points = deposit.estimate === null ? "Points pending" : `+${deposit.estimate} points (estimate)`;
  const balance = deposit.status === "waiting" ? "Balance: \u2026" : "Balance: pending (kept until the kiosk is online)";
  return [points, balance, weighed];
}

function drawResult(view) {
  const deposit = view.deposit;
  const show = view.state === "showing_result" && deposit && deposit.net_g > 0;
  $("result").hidden = !show;
  if (!show) return;
  const [points, balance, weighed] = resultLines(deposit);
  $("points").textContent = points;
  $("balance").textContent = balance;
  $("weighed").textContent = weighed;
}

function drawCountdown(view) {
  const bar = $("countdown");
  const waiting = view.state === "choosing" || view.state === "door_unlocked";
  bar.hidden = !(waiting && view.limit_s && view.remaining_s !== null);
  if (!bar.hidden) {
    $("bar").style.width = `${Math.max(0, Math.min(100, (100 * view.remaining_s) / view.limit_s))}%`;
  }
}

function draw(view) {
  drawCountdown(view);
  if (view.seq === shownSeq) return; // nothing but the countdown changed
  shownSeq = view.seq;
  document.body.className = `state-${cssName(view.state)} tone-${cssName(view.tone || "info")}`;
  $("kiosk").textContent = view.kiosk || "sortpoint";
  $("household").textContent = view.deposit ? `Household ${view.deposit.household}` : "";
  const fault = view.fault ? `Out of order: ${view.fault.reason}` : "";
  $("prompt").textContent = view.prompt || fault;
  $("choices").hidden = !view.choosing;
  if (view.choosing) drawChoices(view);
  drawResult(view);
  $("cancel").hidden = !view.can_cancel;
  $("cancel").textContent = view.state === "showing_result" ? "Done" : "Cancel";
}

function drawOffline() {
  shownSeq = null;
  document.body.className = "state-offline tone-warn";
  $("prompt").textContent = "Please wait: the kiosk is starting";
  $("choices").hidden = true;
  $("result").hidden = true;
  $("cancel").hidden = true;
  $("countdown").hidden = true;
}

let timer = null;
async function poll() {
  clearTimeout(timer);
  try {
    const response = await fetch("/api/state", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const view = await response.json();
    lastAnswerAt = Date.now();
    if (!sending) draw(view);
  } catch (err) {
    if (Date.now() - lastAnswerAt > OFFLINE_AFTER_MS) drawOffline();
  }
  timer = setTimeout(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  $("cancel").addEventListener("click", () => {
    if (!sending) post("/api/cancel", {});
  });
  // a long press on a touch screen must not open a menu or select text
  document.addEventListener("contextmenu", (event) => event.preventDefault());
  poll();
});
