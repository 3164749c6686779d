import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';
console.error('imported');
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
console.error('generated');
console.log('READY', typeof Provider, privateKey.export({ format: 'jwk' }).kty);
