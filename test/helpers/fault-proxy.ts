import { randomUUID } from 'node:crypto'
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { Socket } from 'node:net'

/** One misbehaviour of the proxy, applied to matching requests (blob GETs by default). */
export type Fault =
  /** Sends the headers and `afterBytes` of the body, then closes the connection. */
  | { kind: 'drop-mid-body'; afterBytes: number }
  /** Closes the connection before any response. */
  | { kind: 'reset' }
  /** Reads the request and never answers, the connection left open (a hung registry). */
  | { kind: 'hang' }
  /** Answers 503 with `Retry-After: retryAfterSec`. */
  | { kind: 'status-503'; retryAfterSec?: number }
  /** Ignores Range: answers 200 with the whole blob. */
  | { kind: 'full-body-200' }
  /** Answers 307 to the redirect target, which then serves the blob. */
  | { kind: 'redirect'; expiresInSec?: number }
  /** Sends `bytesPerTick` every `tickMs`; stops sending (socket left open) after `stallAfterBytes`. */
  | { kind: 'trickle'; bytesPerTick: number; tickMs: number; stallAfterBytes?: number }
  /** Flips the byte at `atBodyOffset` of the body. */
  | { kind: 'corrupt'; atBodyOffset: number }
  /** Flips the byte at blob offset `atBlobOffset` when the response carries it. */
  | { kind: 'corrupt-blob-byte'; atBlobOffset: number }
  /** Answers a multi-range request with 200 and the whole blob (as S3 does). */
  | { kind: 'ignore-multi-range' }
  /** No Content-Length: the body ends when the connection closes. */
  | { kind: 'no-content-length' }
  /** Content-Length off by `deltaBytes` from the body actually sent; then closes. */
  | { kind: 'wrong-content-length'; deltaBytes: number }
  /** Promises the whole body but sends `missingBytes` fewer, then closes. */
  | { kind: 'short-body'; missingBytes: number }
  /** Answers 200 with an HTML error page, as a captive portal or broken CDN does. */
  | { kind: 'html-200' }
  /** Serves the range from its start rounded down to a multiple of `alignBytes`, as some CDNs do. */
  | { kind: 'align-range'; alignBytes: number }

/** Which requests a fault applies to. */
export type FaultMatch = 'blob-get' | 'blob-head' | 'manifest-get' | 'any'

/** One request the proxy saw. */
export interface ProxyLogEntry {
  method: string
  path: string
  range: string | undefined
  hasAuthorization: boolean
  faulted: string | undefined
  atMs: number
}

/**
 * A fault-injecting HTTP proxy in front of a real registry, on a free loopback port.
 * `setFault(fault, {times, match})` makes the next `times` matching requests misbehave;
 * everything else is forwarded as is (Host kept, so upload Locations point back here).
 * Carries a second loopback server, `target`, that redirect faults send clients to.
 */
export class FaultProxy {
  readonly log: ProxyLogEntry[] = []
  readonly target: RedirectTarget
  url = ''
  host = ''
  private fault: Fault | undefined
  private remaining = 0
  private match: FaultMatch = 'blob-get'
  private queue: Fault[] = []
  private readonly server: Server
  private readonly sockets = new Set<Socket>()

  private constructor(
    private readonly upstream: URL,
    target: RedirectTarget,
  ) {
    this.target = target
    this.server = createServer((req, res) => {
      this.handle(req, res).catch(() => res.destroy())
    })
    this.server.on('connection', (socket) => {
      this.sockets.add(socket)
      socket.on('close', () => this.sockets.delete(socket))
    })
  }

  /** Starts a proxy forwarding to `upstreamUrl` (e.g. the test registry's url). */
  static async start(upstreamUrl: string): Promise<FaultProxy> {
    const target = await RedirectTarget.start()
    const proxy = new FaultProxy(new URL(upstreamUrl), target)
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve))
    const { port } = proxy.server.address() as { port: number }
    proxy.url = `http://127.0.0.1:${port}`
    proxy.host = `127.0.0.1:${port}`
    return proxy
  }

  /** Injects `fault` into the next `times` (default all) requests matching `match`. */
  setFault(fault: Fault | undefined, options: { times?: number; match?: FaultMatch } = {}): void {
    this.fault = fault
    this.queue = []
    this.remaining = options.times ?? Number.POSITIVE_INFINITY
    this.match = options.match ?? 'blob-get'
  }

  /** The next matching requests get these faults, one each, in order (before any `setFault`). */
  queueFaults(faults: Fault[], options: { match?: FaultMatch } = {}): void {
    this.queue = [...faults]
    this.match = options.match ?? 'blob-get'
  }

  /** Entries of `log` for blob GETs. */
  blobGets(): ProxyLogEntry[] {
    return this.log.filter((e) => e.method === 'GET' && e.path.includes('/blobs/sha256:'))
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    await new Promise((resolve) => this.server.close(resolve))
    await this.target.stop()
  }

  private nextFault(req: IncomingMessage): Fault | undefined {
    if (!this.matches(req)) return undefined
    if (this.queue.length > 0) return this.queue.shift()
    if (!this.fault || this.remaining <= 0) return undefined
    this.remaining--
    return this.fault
  }

  private matches(req: IncomingMessage): boolean {
    const isBlob = (req.url ?? '').includes('/blobs/sha256:')
    if (this.match === 'any') return true
    if (this.match === 'blob-get') return isBlob && req.method === 'GET'
    if (this.match === 'blob-head') return isBlob && req.method === 'HEAD'
    return (req.url ?? '').includes('/manifests/') && req.method === 'GET'
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readAll(req)
    const fault = this.nextFault(req)
    this.log.push({
      method: req.method ?? '',
      path: req.url ?? '',
      range: req.headers.range,
      hasAuthorization: req.headers.authorization !== undefined,
      faulted: fault?.kind,
      atMs: Date.now(),
    })
    const socket = req.socket

    if (fault?.kind === 'reset') return void socket.destroy()
    if (fault?.kind === 'hang') return
    if (fault?.kind === 'status-503') {
      const headers: Record<string, string> = { 'content-type': 'text/plain' }
      if (fault.retryAfterSec !== undefined) headers['retry-after'] = String(fault.retryAfterSec)
      return void res.writeHead(503, headers).end('busy')
    }
    if (fault?.kind === 'html-200') {
      const page = '<!DOCTYPE html><html><body><h1>Service unavailable</h1></body></html>'
      return void res.writeHead(200, { 'content-type': 'text/html' }).end(page)
    }

    const multi = (req.headers.range ?? '').includes(',')
    const dropRange =
      fault?.kind === 'full-body-200' ||
      fault?.kind === 'redirect' ||
      (fault?.kind === 'ignore-multi-range' && multi)
    const up = await this.forward(req, body, dropRange, fault)

    if (fault?.kind === 'redirect' && up.status === 200) {
      const location = this.target.add(up.body, fault.expiresInSec)
      return void res.writeHead(307, { location, 'content-length': '0' }).end()
    }
    if (
      !fault ||
      fault.kind === 'full-body-200' ||
      fault.kind === 'ignore-multi-range' ||
      fault.kind === 'redirect' ||
      fault.kind === 'align-range'
    ) {
      return void res.writeHead(up.status, up.headers).end(up.body)
    }

    const data = Buffer.from(up.body)
    switch (fault.kind) {
      case 'corrupt':
        if (data.length > fault.atBodyOffset)
          data[fault.atBodyOffset] = (data[fault.atBodyOffset] as number) ^ 0xff
        return void res.writeHead(up.status, up.headers).end(data)
      case 'corrupt-blob-byte': {
        const first = Number(
          /^bytes (\d+)-/.exec(String(up.headers['content-range'] ?? ''))?.[1] ?? 0,
        )
        const at = fault.atBlobOffset - first
        if (at >= 0 && at < data.length) data[at] = (data[at] as number) ^ 0xff
        return void res.writeHead(up.status, up.headers).end(data)
      }
      case 'drop-mid-body':
        return writeRaw(socket, up, data.subarray(0, fault.afterBytes), data.length)
      case 'short-body':
        return writeRaw(
          socket,
          up,
          data.subarray(0, Math.max(0, data.length - fault.missingBytes)),
          data.length,
        )
      case 'no-content-length':
        return writeRaw(socket, up, data, undefined)
      case 'wrong-content-length':
        return writeRaw(socket, up, data, Math.max(0, data.length + fault.deltaBytes))
      case 'trickle':
        return trickle(socket, up, data, fault)
    }
  }

  private forward(
    req: IncomingMessage,
    body: Buffer,
    dropRange: boolean,
    fault: Fault | undefined,
  ): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
    const headers = { ...req.headers }
    if (dropRange) delete headers.range
    const m = /^bytes=(\d+)-(\d*)$/.exec(headers.range ?? '')
    if (fault?.kind === 'align-range' && m) {
      const start = Math.floor(Number(m[1]) / fault.alignBytes) * fault.alignBytes
      headers.range = `bytes=${start}-${m[2]}`
    }
    return new Promise((resolve, reject) => {
      const upstream = request(
        {
          host: this.upstream.hostname,
          port: this.upstream.port,
          method: req.method,
          path: req.url,
          headers,
        },
        (res) => {
          readAll(res).then(
            (data) => resolve({ status: res.statusCode ?? 502, headers: res.headers, body: data }),
            reject,
          )
        },
      )
      upstream.on('error', reject)
      upstream.end(body)
    })
  }
}

/**
 * The second loopback server a redirect fault points at (a stand-in for a CDN or object
 * store): serves stored blobs with Range support, logs whether a request carried
 * Authorization, and can refuse HEAD, expired URLs, or URLs used more than N times.
 */
export class RedirectTarget {
  readonly log: {
    method: string
    id: string
    range: string | undefined
    hasAuthorization: boolean
    status: number
  }[] = []
  url = ''
  /** Answer HEAD with 403, as GET-signed object-store URLs do. */
  refuseHead = false
  /** Refuse (403) a URL once it has served this many GETs. */
  maxUsesPerUrl = Number.POSITIVE_INFINITY
  private readonly blobs = new Map<string, { data: Buffer; uses: number; expiresAtMs?: number }>()
  private readonly server: Server
  private readonly sockets = new Set<Socket>()

  private constructor() {
    this.server = createServer((req, res) => this.handle(req, res))
    this.server.on('connection', (socket) => {
      this.sockets.add(socket)
      socket.on('close', () => this.sockets.delete(socket))
    })
  }

  static async start(): Promise<RedirectTarget> {
    const target = new RedirectTarget()
    await new Promise<void>((resolve) => target.server.listen(0, '127.0.0.1', resolve))
    target.url = `http://127.0.0.1:${(target.server.address() as { port: number }).port}`
    return target
  }

  /** Stores a blob and returns a URL for it (with `Expires=` when an expiry is given). */
  add(data: Buffer, expiresInSec?: number): string {
    const id = randomUUID()
    const entry: { data: Buffer; uses: number; expiresAtMs?: number } = { data, uses: 0 }
    let url = `${this.url}/blob/${id}`
    if (expiresInSec !== undefined) {
      entry.expiresAtMs = Date.now() + expiresInSec * 1000
      url += `?Expires=${Math.floor(entry.expiresAtMs / 1000)}&Signature=test-signature`
    }
    this.blobs.set(id, entry)
    return url
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    await new Promise((resolve) => this.server.close(resolve))
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const id = new URL(req.url ?? '/', this.url).pathname.split('/').at(-1) ?? ''
    const entry = this.blobs.get(id)
    const respond = (
      status: number,
      headers: Record<string, string | number>,
      body?: Buffer,
    ): void => {
      this.log.push({
        method: req.method ?? '',
        id,
        range: req.headers.range,
        hasAuthorization: req.headers.authorization !== undefined,
        status,
      })
      res.writeHead(status, headers).end(body)
    }
    if (!entry) {
      respond(404, {})
      return
    }
    if (req.method === 'HEAD') {
      if (this.refuseHead) respond(403, {})
      else respond(200, { 'content-length': entry.data.length })
      return
    }
    const expired = entry.expiresAtMs !== undefined && Date.now() > entry.expiresAtMs
    if (expired || entry.uses >= this.maxUsesPerUrl) {
      respond(403, { 'content-type': 'application/xml' })
      return
    }
    entry.uses++

    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
    if (!m) {
      respond(200, { 'content-length': entry.data.length }, entry.data)
      return
    }
    const first = Number(m[1])
    const last = m[2] ? Math.min(Number(m[2]), entry.data.length - 1) : entry.data.length - 1
    const part = entry.data.subarray(first, last + 1)
    respond(
      206,
      {
        'content-range': `bytes ${first}-${last}/${entry.data.length}`,
        'content-length': part.length,
      },
      part,
    )
  }
}

function readAll(stream: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    stream.on('data', (d: Buffer) => parts.push(d))
    stream.on('end', () => resolve(Buffer.concat(parts)))
    stream.on('error', reject)
  })
}

/** Writes a response by hand (status line, headers, part of a body) and closes the socket. */
function writeRaw(
  socket: Socket,
  up: { status: number; headers: IncomingHttpHeaders },
  body: Buffer,
  contentLength: number | undefined,
): void {
  socket.write(rawHead(up, contentLength))
  socket.end(body)
}

function rawHead(
  up: { status: number; headers: IncomingHttpHeaders },
  contentLength: number | undefined,
): string {
  const lines = [`HTTP/1.1 ${up.status} X`]
  for (const [name, value] of Object.entries(up.headers)) {
    if (['content-length', 'connection', 'transfer-encoding', 'keep-alive'].includes(name)) continue
    for (const v of Array.isArray(value) ? value : [value])
      if (v !== undefined) lines.push(`${name}: ${v}`)
  }
  if (contentLength !== undefined) lines.push(`content-length: ${contentLength}`)
  lines.push('connection: close')
  return `${lines.join('\r\n')}\r\n\r\n`
}

function trickle(
  socket: Socket,
  up: { status: number; headers: IncomingHttpHeaders },
  body: Buffer,
  fault: Extract<Fault, { kind: 'trickle' }>,
): void {
  socket.write(rawHead(up, body.length))
  let sent = 0
  const timer = setInterval(() => {
    if (socket.destroyed) return clearInterval(timer)
    if (fault.stallAfterBytes !== undefined && sent >= fault.stallAfterBytes)
      return clearInterval(timer)
    const limit = fault.stallAfterBytes ?? body.length
    const next = Math.min(sent + fault.bytesPerTick, body.length, Math.max(limit, sent + 1))
    socket.write(body.subarray(sent, next))
    sent = next
    if (sent >= body.length) {
      clearInterval(timer)
      socket.end()
    }
  }, fault.tickMs)
  socket.on('close', () => clearInterval(timer))
}
