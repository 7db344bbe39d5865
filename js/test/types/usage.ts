// Compiled (not run) by types.test.mjs with tsc --strict: the declarations cover what README.md shows.
import { Telegraphy, Subscription, TelegraphyError, RpcError, EventSender, RecoveryInfo, Position, ModelEvent, TransportName, checkConditions, validateSubName, PresenceMember, PresenceSnapshot, PresenceStats, PresenceCount, CatalogListing, CatalogEvent } from "telegraphy-client";

interface Order {
  pk: number;
  total: string;
}

const tg = new Telegraphy({ url: ["wss://a.example/ws", "wss://b.example/ws"], token: "tg1.x", getToken: async () => null });
new Telegraphy({ url: async ({ attempt, previous }) => `wss://gw${attempt}.example/ws?from=${previous ?? ""}` });
const url: string | null = tg.url;
const transport: TransportName | null = tg.transport;
new Telegraphy({ url: "/ws", transports: ["websocket", "sse"], sseUrl: "https://rt.example/sse", EventSource, fetch });
new Telegraphy({ url: "/ws", transports: ["sse"], fetch: globalThis.fetch, ReadableStream: null, EventSource: null, WebSocket: null });
new Telegraphy({ url: "/ws", transports: ["sse"], sseUrl: (ws) => ws.replace(/^ws/, "http").replace(/\/ws$/, "/events") });

const sub: Subscription<Order> = tg
  .subscribe<Order>("shop.order.>", (e) => console.log(e.name, e.data.total, e.sub), {
    filter: { customer__id: 7, total__gte: 100 },
    exclude: { status__in: ["cancelled"] },
    name: "big",
    since: { epoch: "18a6f", seq: 41 },
    onRecover: ({ recovered, epoch, seq }) => console.log(recovered, epoch, seq),
    onError: (e: TelegraphyError) => console.log(e.code),
  })
  .filter({ total__lt: 1000 })
  .exclude({ status: "refunded" })
  .onCreate((e: ModelEvent<Order>) => console.log(e.key, e.scope, e.app ?? "", e.data.pk))
  .onRecover((info: RecoveryInfo) => info.recovered || console.log("reload"))
  .on("recovered", (info) => console.log(info.sub, info.event))
  .on("error", (e) => console.log(e.message));

const position: Position | null = sub.position;
const name: string = sub.name;
const filters = sub.filters.filter;
const swapped: Promise<void> = sub.setFilters({ filter: { customer__id: 8 }, exclude: null });
void sub.setFilters({});
void sub.setFilters();
const off = tg.on("recovered", (info: RecoveryInfo) => console.log(info.seq));
off();
tg.on("state", (s) => console.log(s));
const ok: boolean = validateSubName("big") && checkConditions({ a: 1 }) !== null;
void [url, transport, position, name, filters, ok, swapped];

// @ts-expect-error: url is required
new Telegraphy({});
// @ts-expect-error: a subscription has only "recovered" and "error" events
sub.on("message", () => {});
// @ts-expect-error: setFilters takes {filter, exclude}, not the conditions themselves
sub.setFilters({ customer__id: 8 });
// @ts-expect-error: no such transport
new Telegraphy({ url: "/ws", transports: ["polling"] });

// Presence (section 11): who else is on the channel.
const lobby = tg
  .subscribe("chat.lobby", () => {}, { presence: true })
  .on("join", (m: PresenceMember) => console.log(m.client, m.user, m.info?.name))
  .on("leave", ({ client }) => console.log(client));
lobby.presence().then((snap: PresenceSnapshot) => console.log(snap.truncated, snap.clients.map((m) => m.user)));
lobby.presenceStats().then((s: PresenceStats) => console.log(s.clients + s.users));
tg.events({ event: "shop.>" }).then((listing: CatalogListing) => {
  const first: CatalogEvent | undefined = listing.events[0];
  if (listing.mode === "strict" && first) console.log(first.name, first.patterns.join(","), first.version, listing.truncated);
});
// Over the gateway's join/leave bound: a count instead of a list, the list again once resumed.
lobby
  .on("presence_paused", ({ clients }: PresenceCount) => console.log(`${clients} online`))
  .on("presence_resumed", (info) => lobby.presence().then((snap) => console.log(info.clients, snap.clients.length)));
const paused: boolean = lobby.presencePaused;
void paused;
// @ts-expect-error: presencePaused is read-only
lobby.presencePaused = true;
// @ts-expect-error: presence_paused gives a count, not a member
lobby.on("presence_paused", (m: PresenceMember) => console.log(m.client));

// Client actions (sections 13.1 and 14): publish and rpc with typed errors; `from` on client publishes.
tg.subscribe("chat.lobby.*", (e) => {
  const sender: EventSender | undefined = e.from;
  if (sender && sender.client !== tg.client) console.log(`${sender.user} is typing`);
});
tg.publish("chat.lobby.typing", { typing: true }).then(() => {});
tg.rpc<{ message_id: number }>("chat.send", { text: "hi" }, { timeout: 5000 })
  .then((r) => console.log(r.message_id))
  .catch((e: unknown) => {
    if (e instanceof RpcError && e.code === "unavailable") console.log("no worker, try later");
  });
// @ts-expect-error: the timeout is a number of ms
tg.rpc("chat.send", null, { timeout: "5s" });
