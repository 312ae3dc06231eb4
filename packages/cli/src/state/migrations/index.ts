import {CreateVm1764480000000} from './1764480000000-create-vm.js'
import {AddVmVersion1764600000000} from './1764600000000-add-vm-version.js'
import {AddEgressAndPersistSize1764800000000} from './1764800000000-add-egress-and-persist-size.js'

/** Every migration, oldest first. Never edit one that has shipped: add a new one. */
export const migrations = [CreateVm1764480000000, AddVmVersion1764600000000, AddEgressAndPersistSize1764800000000]
