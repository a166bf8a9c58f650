/**
 * Body of the decode thread (see `DecodeWorker`): every fetched unit is inflated and its
 * chunk digests checked here, a fully fetched layer is hashed here for its diffID check,
 * and the chunks of a local layer blob (`mount --layer`) are decoded here, so none of
 * that CPU work runs on the event loop that serves FUSE.
 * Protocol: one request at a time, `{ id, op, ... }` in, `{ id, ... }` out. Buffers come in
 * and go out as transferred memory, not copies (see `transferListOf`).
 */
import { createHash, type Hash } from 'node:crypto'
import { parentPort } from 'node:worker_threads'
// NOTE: past estargz's index, as unit-decoder.ts does: the index would load the converter.
import { decodeChunk } from '../estargz/decode-chunk.js'
import {
  type DecodeAnswer,
  type DecodedWire,
  type DecodeRequest,
  toErrorWire,
  transferListOf,
} from './decode-wire.js'
import { type DecodedUnit, decodeUnit, decompressAll } from './unit-decoder.js'

const hashes = new Map<number, Hash>()

function asBuffer(view: Uint8Array): Buffer {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength)
}

function decodeAll(request: Extract<DecodeRequest, { op: 'decode' }>): DecodeAnswer {
  const outcomes = request.items.map((item) => {
    try {
      const compressed = asBuffer(item.compressed)
      return { decoded: toWire(decodeUnit(request.format, item.unit, item.extents, compressed)) }
    } catch (err) {
      return { error: toErrorWire(err) }
    }
  })
  return { id: request.id, outcomes }
}

function toWire(decoded: DecodedUnit): DecodedWire {
  return { object: decoded.object, tail: decoded.tail, memberBytes: decoded.memberBytes }
}

// Pieces of one hash arrive in order (one request at a time); the last one answers with
// the digest and forgets the hash.
function hashPieces(request: Extract<DecodeRequest, { op: 'hash' }>): DecodeAnswer {
  let hash = hashes.get(request.hashId)
  if (hash === undefined) {
    hash = createHash('sha256')
    hashes.set(request.hashId, hash)
  }
  for (const piece of request.pieces) hash.update(piece)
  if (!request.isLast) return { id: request.id }
  hashes.delete(request.hashId)
  return { id: request.id, digest: `sha256:${hash.digest('hex')}` }
}

function answer(request: DecodeRequest): DecodeAnswer {
  try {
    if (request.op === 'decode') return decodeAll(request)
    if (request.op === 'hash') return hashPieces(request)
    if (request.op === 'chunk') {
      const { compression, extent, compressed } = request
      return { id: request.id, data: decodeChunk(compression, asBuffer(compressed), extent) }
    }
    if (request.op === 'inflate') {
      const data = decompressAll(
        request.format,
        asBuffer(request.compressed),
        Number.MAX_SAFE_INTEGER,
      )
      return { id: request.id, data }
    }
    hashes.delete(request.hashId)
    return { id: request.id }
  } catch (err) {
    return { id: request.id, error: toErrorWire(err) }
  }
}

parentPort?.on('message', (request: DecodeRequest) => {
  const reply = answer(request)
  const views = (reply.outcomes ?? []).flatMap((outcome) =>
    'decoded' in outcome ? [outcome.decoded.object, outcome.decoded.tail] : [],
  )
  if (reply.data !== undefined) views.push(reply.data)
  parentPort?.postMessage(reply, transferListOf(views))
})
