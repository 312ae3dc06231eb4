import type {MigrationInterface, QueryRunner} from 'typeorm'

/** The runtime version a VM was created with (`python@3.13` has version `3.13`); NULL for older rows and unversioned runtimes. */
export class AddVmVersion1764600000000 implements MigrationInterface {
  name = 'AddVmVersion1764600000000'

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE "vm" ADD COLUMN "version" varchar`)
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE "vm" DROP COLUMN "version"`)
  }
}
