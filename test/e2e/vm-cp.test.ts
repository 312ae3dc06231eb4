import {chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, symlinkSync, writeFileSync} from 'node:fs'
import {join, relative} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {agentIn, tempState} from '../helpers/agent.js'

/** Every entry under dir: relative path -> mode and content (or link target). */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name)
      const st = lstatSync(p)
      const rel = relative(dir, p)
      if (st.isSymbolicLink()) out[rel] = `link -> ${readlinkSync(p)}`
      else if (st.isDirectory()) {
        out[rel] = `dir ${(st.mode & 0o7777).toString(8)}`
        walk(p)
      } else out[rel] = `file ${(st.mode & 0o7777).toString(8)} ${readFileSync(p, 'utf8')}`
    }
  }
  walk(dir)
  return out
}

// A guest tar that writes what a hostile guest would: python's tarfile makes the stream.
const EVIL = `
import io, sys, tarfile
t = tarfile.open('/root/evil.tar', 'w')
def f(name, data=b'pwned'):
    i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))
def l(name, target, kind=tarfile.SYMTYPE):
    i = tarfile.TarInfo(name); i.type = kind; i.linkname = target; t.addfile(i)
out = sys.argv[1]
mode = sys.argv[2]
if mode == 'through-link': l('src/esc', out); f('src/esc/pwned')
if mode == 'dotdot': f('src/../../pwned')
if mode == 'absolute': f(out + '/pwned')
if mode == 'elsewhere': f('other/pwned')
if mode == 'hardlink': l('src/hl', out + '/secret', tarfile.LNKTYPE)
t.close()
`

describe.each(['gvisor', 'runc'] as const)('vm cp on %s', (launcher) => {
  const st = tempState(`agent-cp-${launcher}-`)
  const a = agentIn({...st.env, AGENT_LAUNCHER: launcher})
  let id = ''
  const src = join(st.dir, 'src')
  beforeAll(async () => {
    const r = await a(['vm', 'create', '--language', 'python', '--mem', '128'])
    expect(r.code, r.stderr).toBe(0)
    id = r.stdout.trim()
    mkdirSync(join(src, 'sub', 'deeper'), {recursive: true})
    writeFileSync(join(src, 'a.txt'), 'alpha\n')
    writeFileSync(join(src, 'run.sh'), '#!/bin/sh\necho ran\n')
    writeFileSync(join(src, 'sub', 'with space.txt'), 'spaced\n')
    writeFileSync(join(src, 'sub', 'deeper', 'secret'), 'only me\n')
    chmodSync(join(src, 'run.sh'), 0o755)
    chmodSync(join(src, 'a.txt'), 0o604)
    chmodSync(join(src, 'sub', 'deeper', 'secret'), 0o600)
    chmodSync(join(src, 'sub', 'deeper'), 0o750)
  })
  afterAll(async () => {
    await a(['vm', 'clean', '--all'])
    st.cleanup()
  })

  it('round-trips a directory tree with its modes through a running VM', async () => {
    expect((await a(['vm', 'exec', '--vm', id, '--', 'mkdir', '/work'])).code).toBe(0)
    const cpIn = await a(['vm', 'cp', src, `${id}:/work`])
    expect(cpIn.code, cpIn.stderr).toBe(0)
    const seen = await a(['vm', 'exec', '--vm', id, '--', 'sh', '-c', 'cd /work/src && find . | sort | xargs -d "\\n" stat -c "%a %U %n" && ./run.sh'])
    expect(seen.code, seen.stderr).toBe(0)
    expect(seen.stdout).toContain('604 root ./a.txt\n')
    expect(seen.stdout).toContain('750 root ./sub/deeper\n')
    expect(seen.stdout).toContain('600 root ./sub/deeper/secret\n')
    expect(seen.stdout).toContain('644 root ./sub/with space.txt\n')
    expect(seen.stdout).toMatch(/ran\n$/)
    const back = join(st.dir, 'back')
    const cpOut = await a(['vm', 'cp', `${id}:/work/src`, back])
    expect(cpOut.code, cpOut.stderr).toBe(0)
    expect(tree(back)).toEqual(tree(src))
    expect(statSync(back).mode & 0o777).toBe(statSync(src).mode & 0o777)
    // A single file, into an existing directory and under a new name; a directory's contents with /.
    expect((await a(['vm', 'cp', `${id}:/work/src/a.txt`, st.dir])).code).toBe(0)
    expect(readFileSync(join(st.dir, 'a.txt'), 'utf8')).toBe('alpha\n')
    expect((await a(['vm', 'cp', `${id}:/work/src/run.sh`, join(st.dir, 'renamed.sh')])).code).toBe(0)
    expect(statSync(join(st.dir, 'renamed.sh')).mode & 0o777).toBe(0o755)
    expect((await a(['vm', 'cp', `${id}:/work/src/sub/.`, join(st.dir, 'subcopy')])).code).toBe(0)
    expect(Object.keys(tree(join(st.dir, 'subcopy')))).toEqual(['deeper', 'deeper/secret', 'with space.txt'])
    const missing = await a(['vm', 'cp', `${id}:/nope`, st.dir])
    expect(missing.code).toBe(3)
  })

  it('brings the guest\'s symlinks out as links, never following them on the host', async () => {
    const outside = join(st.dir, 'outside')
    mkdirSync(outside)
    writeFileSync(join(outside, 'secret'), 'host secret\n')
    const mk = await a(['vm', 'exec', '--vm', id, '--', 'sh', '-c', `mkdir -p /work/links && ln -s ${outside}/secret /work/links/abs && ln -s ../../../../../../../../${outside}/secret /work/links/up && echo x > /work/links/plain`])
    expect(mk.code, mk.stderr).toBe(0)
    const dest = join(st.dir, 'links-out')
    // The destination already holds a host link where the guest has a file: it is replaced, not written through.
    mkdirSync(join(dest, 'links'), {recursive: true})
    symlinkSync(join(outside, 'secret'), join(dest, 'links', 'plain'))
    const r = await a(['vm', 'cp', `${id}:/work/links`, dest])
    expect(r.code, r.stderr).toBe(0)
    expect(readlinkSync(join(dest, 'links', 'abs'))).toBe(`${outside}/secret`)
    expect(lstatSync(join(dest, 'links', 'plain')).isFile()).toBe(true)
    expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe('host secret\n')
  })

  it.each(['through-link', 'dotdot', 'absolute', 'elsewhere', 'hardlink'])('refuses a hostile guest tar stream (%s), writing nothing outside the destination', async (mode) => {
    const outside = join(st.dir, `outside-${mode}`)
    mkdirSync(outside)
    writeFileSync(join(outside, 'secret'), 'host secret\n')
    const evil = join(st.dir, 'evil.py')
    writeFileSync(evil, EVIL)
    expect((await a(['vm', 'cp', evil, `${id}:/root/evil.py`])).code).toBe(0)
    // The guest's own tar is replaced by one that sends the crafted stream, whatever is asked.
    const prep = await a(['vm', 'exec', '--vm', id, '--', 'sh', '-c', `python3 /root/evil.py ${outside} ${mode} && mkdir -p /work/src && printf '#!/bin/sh\\ncat /root/evil.tar\\n' > /usr/local/bin/tar && chmod +x /usr/local/bin/tar`])
    expect(prep.code, prep.stderr).toBe(0)
    try {
      const dest = join(st.dir, `dest-${mode}`)
      mkdirSync(dest)
      const r = await a(['vm', 'cp', `${id}:/work/src`, dest])
      expect(r.code, r.stdout + r.stderr).not.toBe(0)
      expect(r.stderr).toMatch(/refused|outside|link/)
      expect(readdirSync(outside)).toEqual(['secret'])
      expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe('host secret\n')
      expect(existsSync(join(st.dir, 'pwned'))).toBe(false)
    } finally {
      expect((await a(['vm', 'exec', '--vm', id, '--', 'rm', '/usr/local/bin/tar'])).code).toBe(0)
    }
  })

  it('refuses host symlinks and copies over --max-size', async () => {
    const withLink = join(st.dir, 'with-link')
    mkdirSync(withLink)
    symlinkSync('/etc/passwd', join(withLink, 'passwd'))
    const r = await a(['vm', 'cp', withLink, `${id}:/work`])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/symbolic link/)
    const big = join(st.dir, 'big.bin')
    writeFileSync(big, Buffer.alloc(2 * 1024 * 1024, 1))
    const tooBig = await a(['vm', 'cp', '--max-size', '1', big, `${id}:/work`])
    expect(tooBig.code).toBe(2)
    expect(tooBig.stderr).toMatch(/larger than the copy limit/)
    expect((await a(['vm', 'exec', '--vm', id, '--', 'sh', '-c', 'head -c 3000000 /dev/zero > /work/big'])).code).toBe(0)
    const outBig = await a(['vm', 'cp', '--max-size', '1', `${id}:/work/big`, st.dir])
    expect(outBig.code).toBe(2)
    expect(outBig.stderr).toMatch(/larger than the copy limit/)
  })

  it('copies in and out of a stopped VM through its disk, resolving its links inside the guest', async () => {
    const mk = await a(['vm', 'exec', '--vm', id, '--', 'sh', '-c', `ln -s /etc /work/etclink && ln -s ../../../../../../..${st.dir} /work/up && echo result > /out/r.txt`])
    expect(mk.code, mk.stderr).toBe(0)
    expect((await a(['vm', 'stop', id])).code).toBe(0)
    // Into a guest link to /etc: the guest's /etc, never the host's.
    const r = await a(['vm', 'cp', src, `${id}:/work/etclink`])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/stopped VM disk/)
    expect(existsSync('/etc/src')).toBe(false)
    // A link climbing out of the guest stays in it: it dangles there (as the guest sees it), and
    // the host dir it names is never the target.
    const up = await a(['vm', 'cp', src, `${id}:/work/up/`])
    expect(up.code).toBe(2)
    expect(up.stderr).toMatch(/onto the file/)
    expect(existsSync(join(st.dir, 'src', 'src'))).toBe(false)
    const out = join(st.dir, 'stopped-out')
    mkdirSync(out)
    expect((await a(['vm', 'cp', `${id}:/out/r.txt`, out])).code).toBe(0)
    expect(readFileSync(join(out, 'r.txt'), 'utf8')).toBe('result\n')
    expect((await a(['vm', 'cp', `${id}:/work/src`, join(out, 'src')])).code).toBe(0)
    expect(tree(join(out, 'src'))).toEqual(tree(src))
    expect((await a(['vm', 'cp', src, `${id}:/in`])).code).toBe(2)
    expect((await a(['vm', 'start', id])).code).toBe(0)
    const seen = await a(['vm', 'exec', '--vm', id, '--', 'sh', '-c', 'stat -c "%a %n" /etc/src/sub/deeper/secret && cat /etc/src/a.txt'])
    expect(seen.stdout).toBe('600 /etc/src/sub/deeper/secret\nalpha\n')
  })
})
