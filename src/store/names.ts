import { EdgestarError } from '../errors.js'

const DIGEST_RE = /^sha256:([a-f0-9]{64})$/
const KEY_RE = /^(sha256-[a-f0-9]{64}|l-[a-f0-9]{64}-[0-9]{1,16})$/

/**
 * Checks a digest that came from the network (manifest, TOC, config) before it is used in
 * a file name or a cache key, and returns its hex part. Only sha256 is accepted: it is the
 * only algorithm the TOC and OCI manifests in the wild use for what we store.
 * Throws EDGESTAR_STORE_BAD_DIGEST.
 */
export function digestHex(digest: string): string {
  const match = DIGEST_RE.exec(digest)
  if (!match)
    throw new EdgestarError(
      'EDGESTAR_STORE_BAD_DIGEST',
      `not a sha256 digest: ${JSON.stringify(digest.slice(0, 80))}`,
      {
        hint: 'the registry or the layer TOC sent a malformed digest; the image cannot be cached',
      },
    )
  return match[1]!
}

/**
 * The cache key of a chunk object: by chunk digest when the TOC gives one (identical
 * chunks across layers and images share one file), otherwise by layer digest and the
 * compressed offset of the unit inside the blob.
 */
export function chunkKey(input: {
  chunkDigest?: string | null
  layerDigest: string
  offset: number
}): string {
  if (input.chunkDigest) return `sha256-${digestHex(input.chunkDigest)}`
  if (!Number.isSafeInteger(input.offset) || input.offset < 0)
    throw new EdgestarError(
      'EDGESTAR_STORE_BAD_OFFSET',
      `bad chunk offset ${input.offset} in layer ${input.layerDigest}`,
    )
  return `l-${digestHex(input.layerDigest)}-${input.offset}`
}

/** True when `key` has the shape `chunkKey` produces, so it is safe as a file name. */
export function isChunkKey(key: string): boolean {
  return KEY_RE.test(key)
}
