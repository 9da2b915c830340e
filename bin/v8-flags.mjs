// V8 settings for every Coupon Rush process, applied before anything else is loaded (this module is
// imported first). A larger young generation: an admission allocates many short-lived objects (request,
// token claims, Redis reply, answer), and with 32 MB semi-spaces fewer of them live long enough to be copied.
// Measured on the accepted (202) path: about 15% less server CPU per request than with the default.
import { setFlagsFromString } from 'node:v8'

setFlagsFromString('--max-semi-space-size=32')
