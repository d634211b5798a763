// Replica placement: which pool on which node holds each replica of a volume.
//
// Pure and deterministic: the same inventory and the same requests in the same order give the
// same answer, so `pulumi preview` shows exactly what `pulumi up` will do. Plan-wide: one
// PlacementLedger is shared by every volume of a plan and counts what earlier placements in the
// plan reserved (bytes, replicas per pool, group members per node), so ten new volumes spread
// over the pools instead of all landing on the one that looked emptiest. Sticky: a replica
// already placed stays where it is while its pool still qualifies; one that no longer qualifies
// moves only when a replacement can be placed (the old one is reported as `leaving`).
//
// Cost: placing one volume is O(pools) (one pass over the eligible pools per new replica, at most
// MAX_REPLICAS of them), with nothing proportional to the number of volumes already placed, so a
// plan of N volumes is O(N x pools). `npm run bench:placement` measures it.

/** What placement needs to know of a pool. */
export interface PoolCandidate {
  readonly node: string;
  /** "" when the pool is declared in the program but not created yet. */
  readonly uuid: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly node_labels: Readonly<Record<string, string>>;
  readonly online: boolean;
  /** Being emptied: takes no new replicas, and its replicas move when a replacement can be placed. */
  readonly draining: boolean;
  readonly capacity_bytes: number;
  readonly used_bytes: number;
  readonly committed_bytes: number;
  readonly cluster_size_bytes: number;
  readonly replica_count: number;
}

/** One replica of a placement, as it is kept in the volume's state. */
export interface PlacedReplica {
  readonly replicaUuid: string;
  readonly node: string;
  /** The pool's name (pool identity is node + name: a declared pool has no uuid before it is created). */
  readonly pool: string;
  /** "" until the pool is created. */
  readonly poolUuid: string;
  /** Why it is here (or, in `leaving`, why it goes), for people reading the plan. */
  readonly reason: string;
}

export interface SpreadRule {
  /** A node label, e.g. "zone": replicas go to distinct values of it. */
  readonly key: string;
  /** required: placement fails when a new replica cannot get a value no replica of the volume holds; preferred: best effort. */
  readonly mode: "required" | "preferred";
}

export interface PlacementRequest {
  /** The volume's uuid (messages, group membership in the ledger). */
  readonly volume: string;
  readonly size_bytes: number;
  readonly thin: boolean;
  readonly replicas: number;
  /** Only pools with all these labels. */
  readonly pool_labels: Readonly<Record<string, string>>;
  /** Only these pools when non-empty (identity node + name: uuids are unknown before creation). */
  readonly pools: readonly { readonly node: string; readonly name: string }[];
  /** Only nodes whose labels include all of these. */
  readonly node_selector: Readonly<Record<string, string>>;
  readonly spread: SpreadRule | null;
  /** Anti-affinity: no two replicas of volumes with the same non-empty group on one node. */
  readonly group: string;
}

export interface VolumePlacement {
  /** Where the replicas are: kept ones first, in their existing order (placement[0] is the nexus node), then new ones. */
  readonly placement: PlacedReplica[];
  /** Existing replicas that go: moved (a replacement is in `placement`) or surplus after `replicas` decreased. */
  readonly leaving: PlacedReplica[];
}

/**
 * Thin replicas may over-commit a pool up to this factor of its capacity: thin volumes rarely
 * fill, but unbounded over-commit turns one busy volume into everyone's out-of-space error.
 */
export const THIN_OVERCOMMIT_FACTOR = 2;

/** Placement failed; a plain Error named "PlacementError" (serialized providers lose Error subclasses). */
export function placementError(message: string): Error {
  return Object.assign(new Error(message), { name: "PlacementError" });
}

export function isPlacementError(err: unknown): boolean {
  return err instanceof Error && err.name === "PlacementError";
}

function roundUp(value: number, multiple: number): number {
  return Math.ceil(value / multiple) * multiple;
}

const GiB = 1024 ** 3;
/** Bytes for people: "1.9 GiB", "512 MiB", "4096 B". */
export function formatBytes(bytes: number): string {
  if (Math.abs(bytes) >= GiB) return `${(bytes / GiB).toFixed(1)} GiB`;
  if (Math.abs(bytes) >= 1024 * 1024) return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
  return `${bytes} B`;
}

/** The space rules, on a pool's usage (inventory plus reservations): why it cannot take the replica, or null. */
export function capacityReason(
  pool: Pick<PoolCandidate, "capacity_bytes" | "used_bytes" | "committed_bytes" | "cluster_size_bytes">,
  size_bytes: number,
  thin: boolean,
): string | null {
  if (thin) {
    if (size_bytes > pool.capacity_bytes) return `capacity ${formatBytes(pool.capacity_bytes)} is smaller than the volume`;
    const limit = pool.capacity_bytes * THIN_OVERCOMMIT_FACTOR;
    if (pool.committed_bytes + size_bytes > limit)
      return `thin over-commit limit reached (${formatBytes(pool.committed_bytes)} committed of ${formatBytes(limit)} allowed)`;
  } else {
    const free = pool.capacity_bytes - pool.used_bytes;
    const needed = roundUp(size_bytes, pool.cluster_size_bytes || 1);
    if (needed > free) return `only ${formatBytes(free)} free, a thick replica needs ${formatBytes(needed)}`;
  }
  return null;
}

/** A pool in the ledger: the inventory's figures plus what this plan reserved on it. */
class PoolState {
  readonly key: string;
  committed_bytes: number;
  used_bytes: number;
  replica_count: number;
  constructor(readonly base: PoolCandidate) {
    this.key = poolKey(base.node, base.name);
    this.committed_bytes = base.committed_bytes;
    this.used_bytes = base.used_bytes;
    this.replica_count = base.replica_count;
  }
  get capacity_bytes(): number {
    return this.base.capacity_bytes;
  }
  get cluster_size_bytes(): number {
    return this.base.cluster_size_bytes;
  }
  get free_bytes(): number {
    return this.base.capacity_bytes - this.used_bytes;
  }
  fits(size: number, thin: boolean): boolean {
    const cap = this.base.capacity_bytes;
    if (thin) return size <= cap && this.committed_bytes + size <= cap * THIN_OVERCOMMIT_FACTOR;
    return roundUp(size, this.base.cluster_size_bytes || 1) <= cap - this.used_bytes;
  }
  private spreadKey: string | null = null;
  private spreadValue = "";
  /** The node's value of a spread label ("" when unset), cached: a plan asks for one key, over and over. */
  spreadValueOf(key: string): string {
    if (this.spreadKey !== key) {
      this.spreadKey = key;
      this.spreadValue = this.base.node_labels[key] ?? "";
    }
    return this.spreadValue;
  }
  reserve(size: number, thin: boolean): void {
    this.committed_bytes += size;
    if (!thin) this.used_bytes += roundUp(size, this.base.cluster_size_bytes || 1);
    this.replica_count += 1;
  }
}

const poolKey = (node: string, name: string): string => `${node}/${name}`;

/** A request's static selection: the pools that pass every rule that does not depend on usage. */
interface Selection {
  readonly eligible: readonly PoolState[];
  /** Pools excluded, with why (strings built once per distinct selector set, not per volume). */
  readonly rejected: readonly { readonly pool: PoolState; readonly kind: string; readonly text: string }[];
}

/**
 * The plan-wide view of the cluster: the inventory plus every reservation made by placements
 * earlier in the same plan. Give it every pool (created or only declared, uuid ""); the usage of
 * existing replicas comes from the inventory, so keeping a replica reserves nothing.
 */
export class PlacementLedger {
  private readonly states: PoolState[];
  private readonly byKey = new Map<string, PoolState>();
  private readonly byUuid = new Map<string, PoolState>();
  /** group -> node -> volumes of the group with a replica on that node. */
  private readonly groups = new Map<string, Map<string, Set<string>>>();
  /** Static selections by selector set (pools' identities and labels do not change during a plan). */
  private readonly selections = new Map<string, Selection>();

  constructor(pools: readonly PoolCandidate[]) {
    // Sorted by node, then name, so answers do not depend on the inventory's order.
    this.states = [...pools].map((p) => new PoolState(p)).sort((a, b) => cmp(a.base.node, b.base.node) || cmp(a.base.name, b.base.name));
    for (const s of this.states) {
      if (this.byKey.has(s.key)) throw placementError(`the inventory lists pool ${s.key} twice`);
      this.byKey.set(s.key, s);
      if (s.base.uuid !== "") this.byUuid.set(s.base.uuid, s);
    }
  }

  /** Every pool with its usage as this plan sees it now (inventory plus reservations), sorted by node and name. */
  pools(): PoolCandidate[] {
    return this.states.map((s) => ({ ...s.base, committed_bytes: s.committed_bytes, used_bytes: s.used_bytes, replica_count: s.replica_count }));
  }

  /** One pool as this plan sees it now, or undefined. */
  pool(node: string, name: string): PoolCandidate | undefined {
    const s = this.byKey.get(poolKey(node, name));
    return s && { ...s.base, committed_bytes: s.committed_bytes, used_bytes: s.used_bytes, replica_count: s.replica_count };
  }

  /**
   * Records that `volume` of `group` has replicas on these nodes. placeVolume records every
   * volume it places; call this first for volumes already placed, so that anti-affinity also
   * sees the volumes that come later in the plan's order.
   */
  noteGroupMembers(group: string, volume: string, nodes: readonly string[]): void {
    if (group === "") return;
    let byNode = this.groups.get(group);
    if (!byNode) this.groups.set(group, (byNode = new Map()));
    for (const node of nodes) {
      let vols = byNode.get(node);
      if (!vols) byNode.set(node, (vols = new Set()));
      vols.add(volume);
    }
  }

  /** @internal */ findExisting(r: Pick<PlacedReplica, "node" | "pool" | "poolUuid">): PoolState | undefined {
    return r.poolUuid !== "" ? this.byUuid.get(r.poolUuid) : this.byKey.get(poolKey(r.node, r.pool));
  }

  /** @internal */ groupNodes(group: string): Map<string, Set<string>> | undefined {
    return group === "" ? undefined : this.groups.get(group);
  }

  /** @internal */ selection(req: PlacementRequest): Selection {
    const required = req.spread?.mode === "required" ? req.spread.key : "";
    const key = JSON.stringify([
      sortedEntries(req.pool_labels),
      req.pools.map((p) => poolKey(p.node, p.name)).sort(),
      sortedEntries(req.node_selector),
      required,
    ]);
    let sel = this.selections.get(key);
    if (!sel) {
      const eligible: PoolState[] = [];
      const rejected: Selection["rejected"][number][] = [];
      const wanted = new Set(req.pools.map((p) => poolKey(p.node, p.name)));
      for (const s of this.states) {
        const why = staticReason(s.base, req, wanted, required);
        if (why) rejected.push({ pool: s, ...why });
        else eligible.push(s);
      }
      this.selections.set(key, (sel = { eligible, rejected }));
    }
    return sel;
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sortedEntries(r: Readonly<Record<string, string>>): [string, string][] {
  return Object.entries(r).sort((a, b) => cmp(a[0], b[0]));
}

/** Why a pool can never take a replica of this request (whatever the usage), or null. */
function staticReason(
  p: PoolCandidate,
  req: PlacementRequest,
  wanted: ReadonlySet<string>,
  requiredSpreadKey: string,
): { kind: string; text: string } | null {
  if (!p.online) return { kind: "not online", text: "pool is not online" };
  if (p.draining) return { kind: "draining", text: "pool is draining" };
  return selectorReason(p, req, wanted) ?? (requiredSpreadKey !== "" && p.node_labels[requiredSpreadKey] === undefined
    ? { kind: `node has no label ${requiredSpreadKey}`, text: `node has no label ${requiredSpreadKey} (spread over ${requiredSpreadKey} is required)` }
    : null);
}

/** The request's selectors (pool_labels, pools, node_selector) against a pool: why it does not match, or null. */
function selectorReason(p: PoolCandidate, req: PlacementRequest, wanted: ReadonlySet<string>): { kind: string; text: string } | null {
  if (wanted.size > 0 && !wanted.has(poolKey(p.node, p.name))) return { kind: "not in the volume's pools", text: "not in the volume's pools" };
  for (const k in req.pool_labels) {
    const v = req.pool_labels[k];
    if (p.labels[k] !== v) return { kind: `label ${k}=${v} does not match`, text: `label ${k}=${v} does not match (${k}=${p.labels[k] ?? "unset"})` };
  }
  for (const k in req.node_selector) {
    const v = req.node_selector[k];
    if (p.node_labels[k] !== v)
      return { kind: `node label ${k}=${v} does not match`, text: `node label ${k}=${v} does not match (${k}=${p.node_labels[k] ?? "unset"})` };
  }
  return null;
}

/** Why an existing replica must move, or null when it stays. */
function moveReason(r: PlacedReplica, pool: PoolState | undefined, req: PlacementRequest, wanted: ReadonlySet<string>, checkSelectors: boolean): string | null {
  const where = `pool ${poolKey(r.node, r.pool)}`;
  if (!pool) return `${where} no longer exists`;
  if (pool.base.draining) return `${where} is draining`;
  if (!checkSelectors) return null;
  const why = selectorReason(pool.base, req, wanted);
  if (!why) return null;
  if (why.kind === "not in the volume's pools") return `${where} is no longer in the volume's pools`;
  return `${why.text.replace(" does not match", " no longer matches")} on ${where}`;
}

/**
 * Places one volume. `existing` is the volume's current placement (from state), `uuidForSlot`
 * names new replicas: a new replica takes the lowest slot (0, 1, ...) whose uuid no existing
 * replica (kept or leaving) and no replica placed before it has, so a fresh volume's replicas
 * are slots 0..n-1 and a replacement never takes the name of a replica that may still exist.
 *
 * Existing replicas, in order:
 *  - stay ("kept: already placed") when their pool still exists (by poolUuid when set, else
 *    node + name), is not draining and still matches pool_labels, pools and node_selector.
 *    Staying reserves nothing (the inventory counts them), except a replica whose poolUuid is ""
 *    (placed on a pool that was not created yet: it cannot exist, so the inventory cannot count it).
 *  - otherwise move: a replacement is placed and the old one goes to `leaving` with the reason;
 *    when no replacement can be placed, the old one stays, its reason saying why it could not
 *    move. A replica is never dropped without a replacement.
 * When `replicas` decreased, the least preferred go to `leaving`: first those that must move
 * (pool gone, draining, selectors no longer match), then the ones placed last (the tail of
 * `existing`). So placement[0] (the nexus node) goes only when it must move, never because of
 * a decrease; when it goes, the next kept replica becomes placement[0].
 *
 * New replicas, one at a time, go to the pool that is eligible (online, not draining, matches
 * the selectors, fits: thick needs free clusters, thin stays within THIN_OVERCOMMIT_FACTOR),
 * on a node holding no replica of this volume and (group set) no replica of another volume of
 * the group, ranked by: spread (the value of the spread key holding fewest replicas of this
 * volume; required: only values holding none), then fewest replicas in the pool, then most
 * free bytes, then node name, then pool name (all counting this plan's reservations).
 * Throws placementError naming why each pool was rejected when a replica cannot be placed.
 */
export function placeVolume(
  ledger: PlacementLedger,
  req: PlacementRequest,
  existing: readonly PlacedReplica[],
  uuidForSlot: (slot: number) => string,
): VolumePlacement {
  return place(ledger, req, existing, uuidForSlot, true);
}

function place(
  ledger: PlacementLedger,
  req: PlacementRequest,
  existing: readonly PlacedReplica[],
  uuidForSlot: (slot: number) => string,
  checkSelectors: boolean,
): VolumePlacement {
  const wanted = new Set(req.pools.map((p) => poolKey(p.node, p.name)));
  // Classify the existing replicas.
  const ok: { r: PlacedReplica; pool: PoolState; index: number }[] = [];
  const bad: { r: PlacedReplica; pool: PoolState | undefined; index: number; why: string }[] = [];
  existing.forEach((r, index) => {
    const pool = ledger.findExisting(r);
    const why = moveReason(r, pool, req, wanted, checkSelectors);
    if (why === null) ok.push({ r, pool: pool!, index });
    else bad.push({ r, pool, index, why });
  });

  const leaving: PlacedReplica[] = [];
  const kept: { r: PlacedReplica; index: number }[] = [];
  const keep = (e: { r: PlacedReplica; pool: PoolState; index: number }) => {
    // A replica placed before its pool was created cannot exist yet: the inventory does not count it.
    if (e.r.poolUuid === "") e.pool.reserve(req.size_bytes, req.thin);
    // A replica adopted from an interrupted up says so; every other kept one is "already placed".
    const reason = e.r.reason.startsWith("kept: made by an interrupted up") ? e.r.reason : "kept: already placed";
    kept.push({ r: { ...e.r, poolUuid: e.pool.base.uuid, reason }, index: e.index });
  };
  for (const e of ok.slice(0, req.replicas)) keep(e);
  for (const e of ok.slice(req.replicas))
    leaving.push({ ...e.r, reason: `replicas decreased to ${req.replicas}: this one was placed last` });

  // New replicas: replacements for the ones that must move, and any the volume is short of.
  const deficit = Math.max(0, req.replicas - kept.length);
  // At most a handful of entries each: arrays beat sets and maps here.
  const usedNodes = kept.map((k) => k.r.node);
  const spreadKey = req.spread?.key ?? "";
  const spreadCounts = new SpreadCounts();
  if (spreadKey !== "") for (const e of ok.slice(0, req.replicas)) spreadCounts.add(e.pool.spreadValueOf(spreadKey));

  const taken = new Set(existing.map((r) => r.replicaUuid));
  let slot = 0;
  const nextUuid = (): string => {
    for (;;) {
      const uuid = uuidForSlot(slot++);
      if (!taken.has(uuid)) {
        taken.add(uuid);
        return uuid;
      }
    }
  };

  const added: PlacedReplica[] = [];
  let failure: string | null = null;
  for (let i = 0; i < deficit; i++) {
    const pick = pickPool(ledger, req, usedNodes, spreadCounts, spreadKey);
    if (typeof pick === "string") {
      failure = `cannot place replica ${kept.length + added.length + 1} of ${req.replicas} of volume ${req.volume || "(new)"} (${formatBytes(req.size_bytes)}, ${req.thin ? "thin" : "thick"}): ${pick}`;
      break;
    }
    const { pool, why } = pick;
    const replaces = i < bad.length ? `replaces ${bad[i].r.replicaUuid} (${bad[i].why}); ` : "";
    const reason = `${replaces}${why}pool has ${pool.replica_count} replica${pool.replica_count === 1 ? "" : "s"}, ${formatBytes(pool.free_bytes)} free`;
    pool.reserve(req.size_bytes, req.thin);
    usedNodes.push(pool.base.node);
    if (spreadKey !== "") spreadCounts.add(pool.spreadValueOf(spreadKey));
    added.push({ replicaUuid: nextUuid(), node: pool.base.node, pool: pool.base.name, poolUuid: pool.base.uuid, reason });
  }

  // Replicas that had to move but found no replacement stay (in their order), saying why.
  let missing = deficit - added.length;
  for (const e of bad) {
    if (missing > 0 && !usedNodes.includes(e.r.node)) {
      missing--;
      usedNodes.push(e.r.node);
      kept.push({
        r: { ...e.r, poolUuid: e.pool?.base.uuid || e.r.poolUuid, reason: `kept although ${e.why}: no replacement could be placed (${failure})` },
        index: e.index,
      });
    } else leaving.push({ ...e.r, reason: e.why });
  }
  if (missing > 0) throw placementError(failure!);

  kept.sort((a, b) => a.index - b.index);
  const placement = [...kept.map((k) => k.r), ...added];
  ledger.noteGroupMembers(req.group, req.volume, placement.map((r) => r.node));
  return { placement, leaving };
}

/** Rejection kinds of the per-replica pass (the static ones come from the ledger's selection). */
const SAME_NODE = 1, GROUP = 2, SPREAD = 3, SPACE = 4;

/** The best pool for the next replica, with why, or the reason none qualifies. O(pools). */
function pickPool(
  ledger: PlacementLedger,
  req: PlacementRequest,
  usedNodes: readonly string[],
  spreadCounts: SpreadCounts,
  spreadKey: string,
): { pool: PoolState; why: string } | string {
  const { eligible, rejected } = ledger.selection(req);
  const groupNodes = ledger.groupNodes(req.group);
  const required = req.spread?.mode === "required";
  const size = req.size_bytes, thin = req.thin, volume = req.volume;
  let best: PoolState | null = null;
  let bestSpread = 0;
  for (const p of eligible) {
    const b = p.base;
    if (usedNodes.length > 0 && usedNodes.includes(b.node)) continue;
    if (groupNodes !== undefined && groupConflict(groupNodes.get(b.node), volume) !== null) continue;
    const spread = spreadKey === "" ? 0 : spreadCounts.get(p.spreadValueOf(spreadKey));
    if (required && spread > 0) continue;
    if (!p.fits(size, thin)) continue;
    if (
      best === null ||
      spread < bestSpread ||
      (spread === bestSpread &&
        (p.replica_count < best.replica_count ||
          (p.replica_count === best.replica_count &&
            (p.free_bytes > best.free_bytes ||
              (p.free_bytes === best.free_bytes && (b.node < best.base.node || (b.node === best.base.node && b.name < best.base.name)))))))
    ) {
      best = p;
      bestSpread = spread;
    }
  }
  if (best !== null) {
    // The reason's prefix (the pool's own figures follow): "zone=b holds fewest replicas of this volume; ".
    let why = "";
    if (spreadKey !== "") {
      const value = best.base.node_labels[spreadKey];
      const fewest = bestSpread === 0 ? "holds no replica of this volume" : `holds fewest replicas of this volume (${bestSpread})`;
      why = value === undefined ? `node has no label ${spreadKey} (spread preferred); ` : `${spreadKey}=${value} ${fewest}; `;
    }
    if (req.group !== "") why += `no other volume of group ${req.group} on node ${best.base.node}; `;
    return { pool: best, why };
  }

  // Nothing qualifies: say why, pool by pool (grouped by kind when there are many).
  const reasons: { pool: PoolState; kind: string; text: string }[] = [...rejected];
  const kinds = ["", "node already holds a replica of this volume", `node holds a replica of another volume of group ${req.group}`, `${spreadKey} already holds a replica of this volume (spread required)`, "not enough space"];
  for (const p of eligible) {
    const b = p.base;
    let kind = 0;
    let text = "";
    const conflict = groupNodes === undefined ? null : groupConflict(groupNodes.get(b.node), volume);
    const value = b.node_labels[spreadKey] ?? "";
    if (usedNodes.includes(b.node)) (kind = SAME_NODE), (text = "node already holds a replica of this volume");
    else if (conflict !== null) (kind = GROUP), (text = `node holds a replica of volume ${conflict} of group ${req.group}`);
    else if (required && spreadCounts.get(value) > 0) (kind = SPREAD), (text = `${spreadKey}=${value} already holds a replica of this volume (spread required)`);
    else (kind = SPACE), (text = capacityReason(p, size, thin) ?? "no space");
    reasons.push({ pool: p, kind: kinds[kind], text });
  }
  if (reasons.length === 0) return "no pools exist on the configured nodes";
  reasons.sort((a, b) => cmp(a.pool.key, b.pool.key));
  return summarize(reasons);
}

/** Replicas of one volume per value of the spread label (a few values: a linear scan). */
class SpreadCounts {
  private readonly values: string[] = [];
  private readonly counts: number[] = [];
  get(value: string): number {
    if (this.values.length === 0) return 0;
    const i = this.values.indexOf(value);
    return i < 0 ? 0 : this.counts[i];
  }
  add(value: string): void {
    const i = this.values.indexOf(value);
    if (i < 0) {
      this.values.push(value);
      this.counts.push(1);
    } else this.counts[i]++;
  }
}

/** Another volume of the group on the node (the first, by name), or null. */
function groupConflict(vols: ReadonlySet<string> | undefined, volume: string): string | null {
  if (vols === undefined) return null;
  let other: string | null = null;
  for (const v of vols) if (v !== volume && (other === null || v < other)) other = v;
  return other;
}

/** Every pool's reason when there are few; per kind, a count and three examples, when there are many. */
export const LISTED_REASONS = 12;
function summarize(reasons: readonly { pool: PoolState; kind: string; text: string }[]): string {
  if (reasons.length <= LISTED_REASONS) return reasons.map((r) => `${r.pool.key}: ${r.text}`).join("; ");
  const byKind = new Map<string, { pool: PoolState; text: string }[]>();
  for (const r of reasons) {
    let list = byKind.get(r.kind);
    if (!list) byKind.set(r.kind, (list = []));
    list.push(r);
  }
  return [...byKind]
    .sort((a, b) => b[1].length - a[1].length || cmp(a[0], b[0]))
    .map(([kind, list]) => {
      const eg = list.slice(0, 3).map((r) => `${r.pool.key}: ${r.text}`).join("; ");
      return `${list.length} pools: ${kind} (e.g. ${eg}${list.length > 3 ? "; ..." : ""})`;
    })
    .join(" | ");
}
