// identity: checks the photos of a stored identity (POST /identities) the way generate will read
// them: a usable face in each (the one face_index names, else the largest), every face found and
// the warnings. No images. The photos stay stored; jobs that name the identity find its faces again,
// the same way, so a job by identity and one by the same photos see the same faces.
import { inputLabel } from '@diffid/shared/contract';
import type { Pipeline } from './pipeline.ts';
import { findInputFaces } from '../stages/find-face.ts';

export const identity: Pipeline<'identity'> = async (ctx, { images: { image: photos }, params }) => {
  ctx.onStep();
  const requests = photos.map((image, i) => ({ image, label: inputLabel('image', i, photos.length), faceIndex: params.face_index?.[i] }));
  const { inputs, warnings } = await ctx.clock.time('find_faces', () => findInputFaces(ctx, requests, 'fail'));
  return { images: [], facts: { inputs, warnings } };
};
