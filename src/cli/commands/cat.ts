import type { Command } from 'commander'
import {
  addCommonOptions,
  addFetchOptions,
  type CommonOptions,
  type FetchOptions,
  openServices,
  settingsFrom,
} from '../options.js'

interface CatOptions extends CommonOptions, FetchOptions {
  stats?: boolean
  refresh?: boolean
}

/** `edgestar cat REF PATH [--stats]`: print one file of an image, fetching only its chunks. */
export function register(program: Command): void {
  const command = program
    .command('cat')
    .description('print one file of an image, fetching only the chunks it needs')
    .argument('<ref>', 'image reference')
    .argument('<path>', 'file path inside the image')
    .option('--stats', 'print one JSON line on stderr: bytesFetched, requests, ...')
    .option('--refresh', 'ask the registry for the reference even when the store has it')
  addFetchOptions(addCommonOptions(command)).action(
    async (ref: string, path: string, options: CatOptions) => {
      const services = openServices(settingsFrom(options))
      services.scheduler.setBackgroundEnabled(false)
      const started = Date.now()
      let bytesWritten = 0
      try {
        const image = await services.images.open(ref, { refresh: Boolean(options.refresh) })
        const file = services.images.lookup(image, path)
        for await (const piece of services.images.readPieces(file, 0, file.entry.size)) {
          bytesWritten += piece.length
          if (!process.stdout.write(piece))
            await new Promise((resolve) => process.stdout.once('drain', resolve))
        }
      } finally {
        if (options.stats) {
          const registry = services.registry.stats()
          const fetch = services.scheduler.stats()
          const line = {
            bytesFetched: registry.bytesReceived,
            requests: registry.requests,
            bytesWritten,
            chunkUnitsFetched: fetch.units,
            integrityRetries: fetch.integrityRetries,
            linkState: fetch.linkState,
            ms: Date.now() - started,
          }
          process.stderr.write(`${JSON.stringify(line)}\n`)
        }
        await services.close()
      }
    },
  )
}
