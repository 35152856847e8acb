// A small MCP Apps host for the browser test: an MCP client (streamable HTTP, same origin as the page) and the
// ext-apps SDK's AppBridge rendering the tool's `ui://` resource in a sandboxed iframe. Query: tool, args (JSON),
// theme. It keeps the view current as a host should: on `notifications/resources/updated` for todo://today it calls
// the tool again and sends the view the new result; a server that publishes no such changes is polled instead.
import { AppBridge, PostMessageTransport, getToolUiResourceUri, RESOURCE_MIME_TYPE } from "@modelcontextprotocol/ext-apps/app-bridge";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

const POLL_MS = 250;
const WATCHED = "todo://today";
const query = new URLSearchParams(location.search);
const toolName = query.get("tool") ?? "get_upcoming_tasks";
const args = JSON.parse(query.get("args") ?? "{}");
const statusLine = document.getElementById("status");

const host = { live: null, results: 0, calls: [], errors: [] };
window.__host = host;

function status(text) {
  statusLine.textContent = text;
}

async function main() {
  // "auto": the 2026-07-28 revision when the server offers it (subscriptions/listen), else the 2025 handshake.
  const client = new Client({ name: "mcp-todo test host", version: "1.0.0" }, { versionNegotiation: { mode: "auto" } });
  await client.connect(new StreamableHTTPClientTransport(new URL("/mcp", location.href)));
  const { tools } = await client.listTools();
  const tool = tools.find((candidate) => candidate.name === toolName);
  const uri = getToolUiResourceUri(tool);
  if (!uri) throw new Error(`${toolName} names no ui:// resource`);
  const read = await client.readResource({ uri });
  const resource = read.contents[0];
  if (resource.mimeType !== RESOURCE_MIME_TYPE) throw new Error(`${uri} is ${resource.mimeType}`);

  const theme = query.get("theme") ?? "light";
  document.body.dataset.theme = theme;
  const iframe = document.createElement("iframe");
  iframe.title = "Agenda";
  iframe.setAttribute("sandbox", "allow-scripts"); // an opaque origin: the view reaches nothing but this page
  document.body.append(iframe);

  const bridge = new AppBridge(
    client,
    { name: "mcp-todo test host", version: "1.0.0" },
    { serverTools: {}, serverResources: {}, logging: {} },
    { hostContext: { theme, platform: "web", displayMode: "inline", toolInfo: { tool } } },
  );
  bridge.onsizechange = ({ height }) => {
    if (height) iframe.style.height = `${height}px`;
  };
  const forwardCall = bridge.oncalltool;
  bridge.oncalltool = async (params, extra) => {
    host.calls.push(params.name);
    return forwardCall(params, extra);
  };

  let last = null;
  async function sendResult() {
    const result = await client.callTool({ name: toolName, arguments: args });
    const text = JSON.stringify(result.structuredContent ?? result.content);
    if (text === last) return;
    last = text;
    await bridge.sendToolResult(result);
    host.results += 1;
  }

  const initialized = new Promise((resolve) => {
    bridge.oninitialized = resolve;
  });
  await bridge.connect(new PostMessageTransport(iframe.contentWindow, iframe.contentWindow));
  iframe.srcdoc = resource.text;
  await initialized;
  await bridge.sendToolInput({ arguments: args });
  await sendResult();

  host.live = await watch(client, sendResult);
  host.setTheme = (next) => {
    document.body.dataset.theme = next;
    bridge.sendHostContextChange({ theme: next });
  };
  status(`connected · ${toolName} · live: ${host.live}`);
  host.ready = true;
}

/** Keep the view current: by subscription when the server publishes changes to todo://today, else by polling.
 * Says which. (A 2026-era server answers `subscriptions/listen` for any URI; only a resource it lists is fed.) */
async function watch(client, sendResult) {
  const refresh = () => sendResult().catch((err) => host.errors.push(String(err)));
  if (client.getServerCapabilities()?.resources?.subscribe) {
    const { resources } = await client.listResources();
    if (resources.some((resource) => resource.uri === WATCHED)) {
      client.setNotificationHandler("notifications/resources/updated", (notification) => {
        if (notification.params.uri === WATCHED) refresh();
      });
      await client.listen({ resourceSubscriptions: [WATCHED] });
      return "subscriptions/listen";
    }
  }
  setInterval(refresh, POLL_MS);
  return "poll";
}

main().catch((err) => {
  host.errors.push(String(err?.stack ?? err));
  status(`failed: ${err}`);
});
