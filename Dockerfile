# Event Master service image, used by docker-compose.yml.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
COPY scripts ./scripts
COPY prisma ./prisma
COPY prisma.config.ts codegen.yml schema.graphql tsconfig.json ./
# Dev dependencies are needed for code generation at install time.
RUN npm ci --include=dev --no-audit --no-fund
COPY src ./src
EXPOSE 4000
USER node
CMD ["npx", "tsx", "src/main.ts"]
