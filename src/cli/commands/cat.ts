import type { Command } from 'commander'
import { EdgestarError } from '../../errors.js'
import {
  addCommonOptions,
  addFetchOptions,
  type CommonOptions,
  type FetchOptions,
  openServices,
  settingsFrom,
} from '../options.js'
import { printResult } from '../output.js'

interface CatOptions extends CommonOptions, FetchOptions {
  stats?: boolean
  refresh?: boolean
}

// With --json the file travels base64 inside one object, so it is held in memory whole.
const MAX_JSON_FILE_BYTES = 16 * 1024 * 1024

/** `edgestar cat REF PATH [--stats]`: print one file of an image, fetching only its chunks. */
export function register(program: Command): void {
  const command = program
    .command('cat')
    .description('print one file of an image, fetching only the chunks it needs')
    .argument('<ref>', 'image reference')
    .argument('<path>', 'file path inside the image')
    .option('--stats', 'print one JSON line on stderr: bytesFetched, requests, ...')
    .option(
      '--refresh',
      'fail rather than use the recorded image when the registry cannot be reached',
    )
  addFetchOptions(addCommonOptions(command)).action(
    async (ref: string, path: string, options: CatOptions) => {
      const services = openServices(settingsFrom(options))
      services.scheduler.setBackgroundEnabled(false)
      const started = Date.now()
      let bytesWritten = 0
      try {
        // A tag may have moved since it was recorded: the registry is asked, and the
        // recorded image serves only when it cannot be reached (logged); --refresh forbids that.
        const image = options.refresh
          ? await services.images.resolve(ref)
          : await services.images.resolveOrRecorded(ref)
        const file = services.images.lookup(image, path)
        if (options.json) checkJsonSize(path, file.entry.size)
        const pieces: Buffer[] = []
        for await (const piece of services.images.readPieces(file, 0, file.entry.size)) {
          bytesWritten += piece.length
          if (options.json) pieces.push(piece)
          else if (!process.stdout.write(piece))
            await new Promise((resolve) => process.stdout.once('drain', resolve))
        }
        if (options.json) {
          const contentBase64 = Buffer.concat(pieces).toString('base64')
          printResult(options, { image: ref, path, size: bytesWritten, contentBase64 }, () => '')
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

function checkJsonSize(path: string, sizeBytes: number): void {
  if (sizeBytes <= MAX_JSON_FILE_BYTES) return
  throw new EdgestarError(
    'EDGESTAR_CLI_TOO_LARGE_FOR_JSON',
    `${path} is ${sizeBytes} bytes; --json carries files up to ${MAX_JSON_FILE_BYTES} bytes`,
    { hint: 'drop --json to stream the file to stdout' },
  )
}
