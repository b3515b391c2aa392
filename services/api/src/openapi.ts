// The contract as the API serves it (at /openapi.yaml and /docs); its home is @diffid/shared/openapi.
export { OPENAPI_PATH, componentSchema, formSchema, openapiDocument, openapiText, resolveRefs } from '@diffid/shared/openapi';
