// Checks that a target Node version satisfies the `engines.node` range of edgestar and of
// every production package in package-lock.json. A cross build cannot find this out by
// itself: npm on the build machine runs its own Node, so it never warns about the target's.
// Usage: node scripts/arm/check-engines.mjs REPO_DIR NODE_VERSION SEMVER_DIR
//   SEMVER_DIR: a semver package to load (npm's own, so nothing needs installing first)
// Prints one line per package that refuses the version; exits 1 if there is any.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, resolve } from 'node:path'

const [repoArg, nodeVersion, semverDir] = process.argv.slice(2)
if (!repoArg || !nodeVersion || !semverDir) {
  console.error('usage: check-engines.mjs REPO_DIR NODE_VERSION SEMVER_DIR')
  process.exit(2)
}
const repoDir = resolve(repoArg)

const semver = createRequire(import.meta.url)(resolve(semverDir))
const lock = JSON.parse(readFileSync(join(repoDir, 'package-lock.json'), 'utf8'))

const refusals = []
for (const [path, entry] of Object.entries(lock.packages)) {
  if (entry.dev) continue
  const range = entry.engines?.node
  if (typeof range !== 'string') continue
  if (semver.satisfies(nodeVersion, range)) continue
  const name = path === '' ? `${lock.name} (package.json)` : path.replace(/^.*node_modules\//, '')
  refusals.push(`${name} needs node ${range}`)
}

for (const line of refusals) console.log(line)
process.exit(refusals.length > 0 ? 1 : 0)
