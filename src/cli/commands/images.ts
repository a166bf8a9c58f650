import type { Command } from 'commander'
import { formatBytes } from '../../fetch/index.js'
import { DEFAULT_STATE_DIR, Store } from '../../store/index.js'
import { addStoreOptions, type CommonOptions, hasStore, settingsFrom } from '../options.js'
import { printResult } from '../output.js'

/** `edgestar images`: what the store holds and how much of each image is local. */
export function register(program: Command): void {
  const command = program
    .command('images')
    .description('list stored images and how much of each is local')
  addStoreOptions(command).action((options: CommonOptions) => {
    const config = settingsFrom(options)
    const stateDir = config.stateDir ?? DEFAULT_STATE_DIR
    if (!hasStore(stateDir)) {
      printResult(options, { ok: true, stateDir, images: [] }, () => nothingStored(stateDir))
      return
    }
    const store = Store.open(stateDir)
    try {
      const rows = store.images.list().map((image) => {
        let presentBytes = 0
        let totalBytes = 0
        let verifiedLayers = 0
        for (const layer of image.layers) {
          const progress = store.layers.progress(layer)
          presentBytes += progress.presentBytes
          totalBytes += progress.totalBytes
          if (store.layers.get(layer)?.state === 'verified') verifiedLayers++
        }
        return {
          reference: image.reference,
          manifestDigest: image.manifestDigest,
          platform: image.platform,
          layers: image.layers.length,
          verifiedLayers,
          presentBytes,
          totalBytes,
          percentLocal:
            totalBytes === 0 ? 100 : Math.floor((presentBytes / totalBytes) * 1000) / 10,
          lastUsedAt: new Date(image.lastUsedAt).toISOString(),
        }
      })
      printResult(options, { ok: true, images: rows }, () => {
        if (rows.length === 0) return 'no images stored'
        const lines = rows.map(
          (row) =>
            `${row.reference}  ${row.platform}  ${row.percentLocal}% local ` +
            `(${formatBytes(row.presentBytes)} of ${formatBytes(row.totalBytes)} compressed), ` +
            `${row.verifiedLayers}/${row.layers} layers verified`,
        )
        return lines.join('\n')
      })
    } finally {
      store.close()
    }
  })
}

/** What a read-only command says about a state directory that holds no store yet. */
export function nothingStored(stateDir: string): string {
  return `nothing stored yet in ${stateDir} (pull, cat or mount an image first)`
}
