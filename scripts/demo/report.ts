/** One way of starting the application, measured over the simulated link. */
export interface VariantResult {
  label: string
  /** Milliseconds from the deploy command to the application's ready line. */
  readyMs: number
  /** Bytes received from the registry before the ready line (all requests). */
  bytesBeforeReady: number
  /** Compressed size of the whole image, for the fraction column. */
  imageBytes: number
  /** Milliseconds until every byte of the image was local, when it got there. */
  completeMs?: number
}

/** The link the numbers were measured on. */
export interface LinkProfile {
  name: string
  rateBitsPerSec: number
  roundTripMs: number
  lossProbability: number
}

/**
 * The floor no tool can beat on this link: the bytes the application really needs, sent at
 * the link's rate, plus the round trips every lazy start pays (manifest, config, TOC, one
 * chunk request at least; TCP and HTTP setup folded into the first).
 */
export function lowerBoundMs(neededBytes: number, link: LinkProfile, roundTrips = 4): number {
  return (neededBytes * 8 * 1000) / link.rateBitsPerSec + roundTrips * link.roundTripMs
}

/** Formats the closing table of the demo. */
export function formatTable(results: VariantResult[], link: LinkProfile, boundMs: number): string {
  const header = ['run', 'time to ready', 'fetched before ready', 'of image', 'image complete']
  const rows = results.map((result) => [
    result.label,
    seconds(result.readyMs),
    mebibytes(result.bytesBeforeReady),
    `${((100 * result.bytesBeforeReady) / Math.max(1, result.imageBytes)).toFixed(1)} %`,
    result.completeMs === undefined ? '-' : seconds(result.completeMs),
  ])
  rows.push(['lower bound (link)', seconds(boundMs), '', '', ''])

  const widths = header.map((cell, column) =>
    Math.max(cell.length, ...rows.map((row) => row[column]?.length ?? 0)),
  )
  const line = (cells: string[]) =>
    cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ')
  const title =
    `link: ${link.name}, ${(link.rateBitsPerSec / 1e6).toFixed(1)} Mbit/s, ` +
    `${link.roundTripMs} ms round trip, ${(link.lossProbability * 100).toFixed(1)} % loss`
  return [title, line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n')
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`
}

function mebibytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(2)} MiB`
}
