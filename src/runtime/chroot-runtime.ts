import { readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { INIT_PATH_IN_CONTAINER, withInit } from './init-process.js'
import type { LaunchRequest } from './oci-bundle.js'
import type { ContainerRuntime, RunningProcess } from './runtime.js'
import { spawnContainer } from './spawn-container.js'

const DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty']

/**
 * The fallback when no OCI runtime is installed: `unshare` gives the process its own
 * mount and pid namespaces (and a network namespace for `none`), a shell in that
 * namespace mounts /dev nodes and the binds, then `unshare --root --wd --setuid`
 * enters the root filesystem as the image's user. No cgroups, no seccomp, no
 * capability dropping: weaker isolation than runc, said in the docs.
 */
export class ChrootRuntime implements ContainerRuntime {
  readonly kind = 'chroot' as const

  async launch(req: LaunchRequest): Promise<RunningProcess> {
    await this.cleanup(req.id, req.containerDir)
    const root = req.rootDir
    const args = [
      '--mount',
      '--propagation',
      'private',
      '--pid',
      '--fork',
      '--kill-child',
      `--mount-proc=${path.join(root, 'proc')}`,
      ...(req.network === 'none' ? ['--net'] : []),
      '--',
      '/bin/sh',
      '-c',
      setupScript(req),
      'edgestar-setup',
      ...(req.init === undefined ? req.process.args : withInit(req.process.args)),
    ]
    const pidFile = path.join(req.containerDir, 'chroot.pid')
    const { child, exited } = await spawnContainer('unshare', args, {
      env: Object.fromEntries(
        req.process.env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]),
      ),
      hint: 'install util-linux (unshare) or runc',
      afterExit: () => rm(pidFile, { force: true }),
    })
    await writeFile(pidFile, `${child.pid}\n`)
    return {
      pid: child.pid as number,
      stdout: child.stdout,
      stderr: child.stderr,
      exited,
      kill: async (signal) => {
        // The whole process group: unshare, the setup shell, and the container's pid 1.
        try {
          process.kill(-(child.pid as number), signal)
        } catch {
          // Already gone.
        }
      },
    }
  }

  async cleanup(_id: string, containerDir: string): Promise<void> {
    const pidFile = path.join(containerDir, 'chroot.pid')
    const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim())
    if (pid > 0) {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
      // NOTE: a pid can be reused after a reboot; only a process that is our unshare
      // over this container's root is killed.
      if (cmdline.startsWith('unshare') && cmdline.includes(containerDir)) {
        try {
          process.kill(-pid, 'SIGKILL')
        } catch {
          // Already gone.
        }
      }
    }
    await rm(pidFile, { force: true })
  }
}

/** Shell quoting for one word. */
function quote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`
}

function setupScript(req: LaunchRequest): string {
  const root = req.rootDir
  const lines = ['set -e']

  // A private /dev with only harmless nodes, like the OCI default device list.
  lines.push(`if [ -d ${quote(`${root}/dev`)} ]; then`)
  lines.push(`  mount -t tmpfs -o nosuid,mode=755 tmpfs ${quote(`${root}/dev`)}`)
  for (const dev of DEVICES) {
    const target = quote(`${root}/dev/${dev}`)
    lines.push(`  touch ${target} && mount --bind /dev/${dev} ${target}`)
  }
  lines.push('fi')

  const init =
    req.init === undefined
      ? []
      : [{ source: req.init, target: INIT_PATH_IN_CONTAINER, readOnly: true }]
  for (const bind of [...init, ...req.binds]) {
    const target = quote(path.join(root, bind.target))
    const source = quote(bind.source)
    lines.push(
      `if [ -d ${source} ]; then mkdir -p ${target}; else mkdir -p "$(dirname ${target})"; touch ${target}; fi`,
    )
    lines.push(`mount --rbind ${source} ${target}`)
    if (bind.readOnly) lines.push(`mount -o remount,bind,ro ${target}`)
  }

  const { uid, gid, cwd } = req.process
  lines.push(
    `exec unshare --root=${quote(root)} --wd=${quote(cwd)} --setgid=${gid} --setuid=${uid} -- "$@"`,
  )
  return lines.join('\n')
}
