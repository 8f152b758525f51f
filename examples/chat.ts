/**
 * A broadcast chat on brick's WebSocket: one HTML page, and every message goes
 * to everyone connected. Serve it with the CLI, then open the page in two
 * browser tabs and talk:
 *
 * ```sh
 * deno run --allow-net --allow-read main.ts examples/chat.ts   # http://localhost:8888/
 * node npm/main.js npm/examples/chat.js                        # Node, after deno task build:npm
 * ```
 *
 * `GET /` is the page; `GET /ws?name=Ann` joins the chat as Ann. The server
 * speaks JSON: `{ type: "join" | "leave", name, count }` and
 * `{ type: "message", name, text }`. Names and messages are cut to size, and
 * the page shows them with `textContent` only, under a Content-Security-Policy
 * that runs no script but its own, so nothing anyone types becomes markup.
 * Opening `/?name=Ann` joins at once.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { type ServerWebSocket, upgradeWebSocket } from "../websocket.ts";

/** The longest name, in characters. */
export const MAX_NAME = 24;
/** The longest message, in characters; longer ones are cut. */
export const MAX_TEXT = 500;

/** What the server sends to every member. */
export type ChatEvent =
  | { type: "join" | "leave"; name: string; count: number }
  | { type: "message"; name: string; text: string };

/** A chat room as a fetch app: `{ fetch }`, as the CLI's app modules export it. */
export interface ChatApp {
  /** Answers the page, the WebSocket endpoint, and 404 elsewhere. */
  fetch(request: Request): Response;
  /** The names of the members now connected. */
  readonly members: string[];
}

/**
 * Creates a chat room with its own members. The module's default export is
 * one such room.
 *
 * @returns The app.
 */
export function createChat(): ChatApp {
  const members = new Map<ServerWebSocket, string>();

  function broadcast(event: ChatEvent): void {
    const data = JSON.stringify(event);
    for (const socket of members.keys()) {
      if (socket.readyState === socket.OPEN) socket.send(data);
    }
  }

  function join(request: Request, wanted: string | null): Response {
    const { socket, response } = upgradeWebSocket(request, { maxMessageSize: 4096 });
    let name = "";
    socket.onopen = () => {
      name = uniqueName(cleanName(wanted ?? ""), new Set(members.values()));
      members.set(socket, name);
      broadcast({ type: "join", name, count: members.size });
    };
    socket.onmessage = (event) => {
      if (typeof event.data !== "string") return socket.close(1003, "Send text messages only");
      const text = cleanText(event.data);
      if (text !== "") broadcast({ type: "message", name, text });
    };
    socket.onclose = () => {
      if (members.delete(socket)) broadcast({ type: "leave", name, count: members.size });
    };
    return response;
  }

  return {
    fetch(request: Request): Response {
      const url = new URL(request.url);
      if (url.pathname === "/ws") return join(request, url.searchParams.get("name"));
      if (url.pathname === "/" && (request.method === "GET" || request.method === "HEAD")) {
        return new Response(PAGE, { headers: PAGE_HEADERS });
      }
      return new Response("Not Found\n", { status: 404 });
    },
    get members() {
      return [...members.values()];
    },
  };
}

/** Whitespace runs become one space, control characters go, and the rest is cut to size. */
function cleanName(raw: string): string {
  const name = [...raw.replace(/[\p{Cc}\s]+/gu, " ").trim()].slice(0, MAX_NAME).join("");
  return name === "" ? "anonymous" : name;
}

function cleanText(raw: string): string {
  return [...raw.replace(/[\p{Cc}]+/gu, " ").trim()].slice(0, MAX_TEXT).join("");
}

/** `name`, or `name (2)`, `name (3)`… when someone already has it. */
function uniqueName(name: string, taken: Set<string>): string {
  if (!taken.has(name)) return name;
  for (let i = 2; i <= taken.size + 1; i++) {
    const candidate = `${name} (${i})`;
    if (!taken.has(candidate)) return candidate;
  }
  return `${name} (${taken.size + 2})`;
}

// ─── The page ───────────────────────────────────────────────────────────────

const SCRIPT = `
const $ = (id) => document.getElementById(id);
let socket = null;

function show(kind, who, text) {
  const line = document.createElement("li");
  line.className = kind;
  if (who) {
    const name = document.createElement("b");
    name.textContent = who + ": ";
    line.append(name);
  }
  line.append(document.createTextNode(text));
  $("log").append(line);
  line.scrollIntoView({ block: "end" });
}

function join(name) {
  const url = new URL("/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("name", name);
  socket = new WebSocket(url);
  socket.onopen = () => {
    $("join").hidden = true;
    $("say").hidden = false;
    $("text").focus();
  };
  socket.onmessage = (event) => {
    const m = JSON.parse(event.data);
    if (m.type === "message") show("message", m.name, m.text);
    else if (m.type === "join") show("notice", "", m.name + " joined (" + m.count + " here)");
    else if (m.type === "leave") show("notice", "", m.name + " left (" + m.count + " here)");
  };
  socket.onclose = (event) => {
    show("notice", "", "Disconnected" + (event.reason ? ": " + event.reason : ""));
    $("say").hidden = true;
    $("join").hidden = false;
  };
}

$("join").onsubmit = (event) => {
  event.preventDefault();
  join($("name").value);
};
$("say").onsubmit = (event) => {
  event.preventDefault();
  if (socket && socket.readyState === WebSocket.OPEN) socket.send($("text").value);
  $("text").value = "";
};
const preset = new URLSearchParams(location.search).get("name");
if (preset) join(preset);
`;

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>brick chat</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  #log { list-style: none; padding: 0; min-height: 10rem; }
  .notice { color: #666; font-style: italic; }
  form { display: flex; gap: .5rem; }
  [hidden] { display: none; }
  input { flex: 1; font: inherit; padding: .3rem; }
</style>
</head>
<body>
<h1>brick chat</h1>
<form id="join"><input id="name" placeholder="Your name" maxlength="${MAX_NAME}" required autofocus><button>Join</button></form>
<ul id="log"></ul>
<form id="say" hidden><input id="text" placeholder="Message" maxlength="${MAX_TEXT}" autocomplete="off" required><button>Send</button></form>
<script>${SCRIPT}</script>
</body>
</html>
`;

/** The page runs its own script only (by hash) and connects back to this server only. */
const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "content-security-policy": [
    "default-src 'none'",
    `script-src 'sha256-${createHash("sha256").update(SCRIPT).digest("base64")}'`,
    "style-src 'unsafe-inline'",
    "connect-src 'self'",
    "form-action 'none'",
    "base-uri 'none'",
  ].join("; "),
  "x-content-type-options": "nosniff",
};

/** The chat served by `brick examples/chat.ts`. */
const chat: ChatApp = createChat();
export default chat;
