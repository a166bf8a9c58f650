import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { describe, test } from 'node:test'
import { isEdgestarError } from '../../src/errors.js'
import {
  canonicalCommandBytes,
  canonicalJson,
  checkCommandSignature,
  defaultDeviceId,
  deviceTopics,
  generateFleetKeyPair,
  loadFleetPrivateKey,
  loadFleetPublicKey,
  signCommand,
} from '../../src/mqtt/index.js'

describe('canonical command form', () => {
  test('sorts keys at every depth, drops whitespace and the top-level sig', () => {
    const command = {
      type: 'deploy',
      id: 'a',
      sig: 'x',
      env: { B: '2', A: '1' },
      command: ['z', 'a'],
    }
    assert.equal(
      canonicalCommandBytes(command).toString(),
      '{"command":["z","a"],"env":{"A":"1","B":"2"},"id":"a","type":"deploy"}',
    )
  })

  test('writes strings and numbers as JSON does and refuses non-finite numbers', () => {
    assert.equal(
      canonicalJson({ n: 10, s: 'é"\n', b: false, z: null }),
      '{"b":false,"n":10,"s":"é\\"\\n","z":null}',
    )
    assert.throws(() => canonicalJson({ n: Number.NaN }))
  })
})

describe('command signatures', () => {
  const pair = generateFleetKeyPair()
  const privateKey = loadFleetPrivateKey(pair.privateKeyPem, 'test')
  const publicKey = loadFleetPublicKey(pair.publicKeyPem, 'test')

  test('a signed command verifies, whatever its key order', () => {
    const signed = signCommand({ id: 'c1', type: 'gc', target: 'device/d' }, privateKey)
    const reordered = { target: signed.target, sig: signed.sig, type: signed.type, id: signed.id }
    assert.equal(checkCommandSignature(reordered, publicKey), 'valid')
  })

  test('a changed field, a missing sig or garbage fail', () => {
    const signed = signCommand({ id: 'c1', type: 'gc' }, privateKey)
    assert.equal(checkCommandSignature({ ...signed, type: 'status' }, publicKey), 'invalid')
    assert.equal(checkCommandSignature({ id: 'c1', type: 'gc' }, publicKey), 'missing')
    assert.equal(checkCommandSignature({ ...signed, sig: 'AAAA' }, publicKey), 'invalid')
    assert.equal(checkCommandSignature({ ...signed, sig: 42 }, publicKey), 'invalid')
  })

  test('refuses keys that are not Ed25519 with a code', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 })
    const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' })
    assert.throws(
      () => loadFleetPublicKey(pem, 'rsa.pub'),
      (err) => isEdgestarError(err, 'EDGESTAR_MQTT_KEY_INVALID'),
    )
    assert.throws(
      () => loadFleetPublicKey('not a key', 'x.pub'),
      (err) => isEdgestarError(err, 'EDGESTAR_MQTT_KEY_INVALID'),
    )
  })
})

describe('device topics', () => {
  test('derive from prefix, device id and groups', () => {
    const topics = deviceTopics('acme/edge', 'dev1', ['north'])
    assert.equal(topics.command, 'acme/edge/dev1/cmd')
    assert.equal(topics.result, 'acme/edge/dev1/cmd/result')
    assert.deepEqual(topics.groupCommands, ['acme/edge/group/north/cmd'])
  })

  test('refuse levels that would widen a subscription', () => {
    for (const [id, groups] of [
      ['a/b', []],
      ['+', []],
      ['group', []],
      ['ok', ['#']],
      ['', []],
    ] as const)
      assert.throws(
        () => deviceTopics('edgestar', id, [...groups]),
        (err) => isEdgestarError(err, 'EDGESTAR_MQTT_TOPIC_INVALID'),
      )
  })
})

describe('defaultDeviceId', () => {
  test('is the machine id, or the host name where there is none, and a valid topic level', () => {
    const id = defaultDeviceId()
    assert.ok(id.length > 0)
    assert.doesNotThrow(() => deviceTopics('edgestar', id, []))
  })
})

describe('fleet key files', () => {
  test('a private key given where the public one belongs (and back) says which file to use', () => {
    const pair = generateFleetKeyPair()
    assert.throws(
      () => loadFleetPublicKey(pair.privateKeyPem, 'fleet.key'),
      (err) =>
        isEdgestarError(err, 'EDGESTAR_MQTT_KEY_INVALID') &&
        /holds a private key/.test(err.message) &&
        /public key \(FILE\.pub\)/.test(err.hint ?? ''),
    )
    assert.throws(
      () => loadFleetPrivateKey(pair.publicKeyPem, 'fleet.key.pub'),
      (err) =>
        isEdgestarError(err, 'EDGESTAR_MQTT_KEY_INVALID') &&
        /holds a public key/.test(err.message) &&
        /private key \(FILE, not FILE\.pub\)/.test(err.hint ?? ''),
    )
    assert.equal(loadFleetPublicKey(pair.publicKeyPem, 'ok').asymmetricKeyType, 'ed25519')
  })
})
