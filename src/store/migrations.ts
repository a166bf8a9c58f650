/**
 * Schema versions of the state database, applied in order inside one transaction each.
 * `PRAGMA user_version` records the last one applied. Never edit a shipped step: add one.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: images, layers, TOC rows, fetch units and the chunk cache index, deployments,
  // executed commands, telemetry outbox, pins held by mounts.
  `
  CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    reference TEXT NOT NULL UNIQUE,
    manifest_digest TEXT NOT NULL,
    platform TEXT NOT NULL,
    config_json TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL
  );
  CREATE TABLE layers (
    digest TEXT PRIMARY KEY,
    size_bytes INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    diff_id TEXT,
    toc_digest TEXT,
    toc_offset INTEGER,
    format TEXT NOT NULL,
    verification TEXT NOT NULL,
    state TEXT NOT NULL,
    source_reference TEXT NOT NULL,
    indexed_at INTEGER NOT NULL
  );
  CREATE TABLE image_layers (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    layer_digest TEXT NOT NULL REFERENCES layers(digest),
    PRIMARY KEY (image_id, position)
  ) WITHOUT ROWID;
  CREATE INDEX image_layers_by_layer ON image_layers(layer_digest);
  CREATE TABLE toc_entries (
    layer_digest TEXT NOT NULL,
    ord INTEGER NOT NULL,
    name TEXT NOT NULL,
    parent TEXT NOT NULL,
    base TEXT NOT NULL,
    type TEXT NOT NULL,
    size INTEGER NOT NULL,
    modtime TEXT,
    link_name TEXT,
    mode INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    user_name TEXT,
    group_name TEXT,
    dev_major INTEGER,
    dev_minor INTEGER,
    xattrs TEXT,
    digest TEXT,
    PRIMARY KEY (layer_digest, ord)
  ) WITHOUT ROWID;
  CREATE UNIQUE INDEX toc_by_name ON toc_entries(layer_digest, name);
  CREATE INDEX toc_by_parent ON toc_entries(layer_digest, parent, base);
  CREATE TABLE layer_units (
    layer_digest TEXT NOT NULL,
    offset INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    kind TEXT NOT NULL,
    chunk_key TEXT NOT NULL,
    object_from INTEGER NOT NULL,
    data_bytes INTEGER NOT NULL,
    member_bytes INTEGER,
    tail BLOB,
    rank INTEGER NOT NULL,
    chunk_digest TEXT,
    PRIMARY KEY (layer_digest, offset)
  ) WITHOUT ROWID;
  CREATE INDEX layer_units_by_key ON layer_units(chunk_key);
  CREATE INDEX layer_units_by_rank ON layer_units(layer_digest, rank, offset);
  CREATE TABLE layer_chunks (
    layer_digest TEXT NOT NULL,
    entry_name TEXT NOT NULL,
    chunk_offset INTEGER NOT NULL,
    chunk_size INTEGER NOT NULL,
    unit_offset INTEGER NOT NULL,
    inner_offset INTEGER NOT NULL,
    chunk_digest TEXT,
    PRIMARY KEY (layer_digest, entry_name, chunk_offset)
  ) WITHOUT ROWID;
  CREATE TABLE chunks (
    key TEXT PRIMARY KEY,
    size_bytes INTEGER NOT NULL,
    state TEXT NOT NULL,
    last_used_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX chunks_by_use ON chunks(state, last_used_at);
  CREATE TABLE pins (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    holder TEXT NOT NULL,
    pid INTEGER NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE deployments (
    name TEXT PRIMARY KEY,
    image TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE deployment_history (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    at INTEGER NOT NULL
  );
  CREATE INDEX deployment_history_by_name ON deployment_history(name, id);
  CREATE TABLE command_log (
    id TEXT PRIMARY KEY,
    result_json TEXT NOT NULL,
    at INTEGER NOT NULL
  );
  CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    at INTEGER NOT NULL
  );
  CREATE INDEX outbox_by_kind ON outbox(kind, id);
  CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
  );
  `,
  // 2: the extents of one fetch unit are looked up for every unit fetched; without this
  // index each lookup scanned the layer's chunk rows (quadratic in a full pull).
  `
  CREATE INDEX layer_chunks_by_unit ON layer_chunks(layer_digest, unit_offset, inner_offset);
  `,
  // 3: chunk objects are packed into one file per layer (see ChunkCache): a row records
  // its slot; `packs` hands out slots, `pack_holes` lists freed slots still to punch.
  // Rows without a pack keep their object in a file of its own (older caches, plain layers).
  `
  ALTER TABLE chunks ADD COLUMN pack TEXT;
  ALTER TABLE chunks ADD COLUMN pack_offset INTEGER;
  CREATE TABLE packs (
    name TEXT PRIMARY KEY,
    end_bytes INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE pack_holes (
    pack TEXT NOT NULL,
    offset INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    freed_at INTEGER NOT NULL,
    PRIMARY KEY (pack, offset)
  ) WITHOUT ROWID;
  `,
]

/** The newest schema this build understands. */
export const SCHEMA_VERSION = MIGRATIONS.length
